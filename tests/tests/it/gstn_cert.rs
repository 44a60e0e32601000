//! The GSTN dialect's certificate files: what GSP software loads in place of GSTN's certificate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use diesel::prelude::*;
use gsp_gateway_api::cli::{Command, KeysCommand};
use gsp_gateway_api::gstn::{self, rsa_key};
use gsp_gateway_storage::schema::signing_keys;

use crate::helpers::*;

on_both_backends!(
    the_three_files_are_served_with_their_content_types,
    the_pem_and_der_are_one_certificate_of_the_published_key,
    a_restart_on_the_same_database_serves_the_same_key,
    a_rotated_key_is_published_and_the_old_one_still_decrypts,
);

/// A file as served: status, content type, body.
struct File {
    status: u16,
    content_type: String,
    cache_control: String,
    body: Vec<u8>,
}

async fn fetch(app: &TestApp, path: &str) -> File {
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    File {
        status: response.status().as_u16(),
        content_type: header("content-type"),
        cache_control: header("cache-control"),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// The DER inside a PEM block with `label`.
fn pem_der(pem: &[u8], label: &str) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    assert!(text.starts_with(&begin), "{text}");
    let inner = &text[begin.len()..text.find(&end).expect("an END line")];
    let b64: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).unwrap()
}

async fn gstn_key_rows(app: &TestApp) -> Vec<(String, bool)> {
    app.state
        .db
        .run(|c| {
            Ok(signing_keys::table
                .filter(signing_keys::purpose.eq(rsa_key::PURPOSE))
                .order(signing_keys::created_at.asc())
                .select((signing_keys::kid, signing_keys::retired_at.is_null()))
                .load::<(String, bool)>(c)?)
        })
        .await
        .unwrap()
}

async fn the_three_files_are_served_with_their_content_types(backend: Backend) {
    let app = spawn_app(backend).await;
    let pem = fetch(&app, "/taxpayerapi/certificate.pem").await;
    assert_eq!(
        (pem.status, pem.content_type.as_str()),
        (200, "application/x-pem-file")
    );
    assert!(pem.body.starts_with(b"-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.cache_control.starts_with("public"));

    let der = fetch(&app, "/taxpayerapi/certificate.cer").await;
    assert_eq!(
        (der.status, der.content_type.as_str()),
        (200, "application/pkix-cert")
    );
    assert_eq!(der.body[0], 0x30, "a DER SEQUENCE");

    let key = fetch(&app, "/taxpayerapi/public-key.pem").await;
    assert_eq!(
        (key.status, key.content_type.as_str()),
        (200, "application/x-pem-file")
    );
    assert!(key.body.starts_with(b"-----BEGIN PUBLIC KEY-----\n"));

    let post = app
        .client
        .post(format!("{}/taxpayerapi/certificate.pem", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);

    let rows = gstn_key_rows(&app).await;
    assert_eq!(rows.len(), 1, "the first start generated exactly one key");
    assert!(rows[0].1, "and it is active");
}

async fn the_pem_and_der_are_one_certificate_of_the_published_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let pem = fetch(&app, "/taxpayerapi/certificate.pem").await;
    let der = fetch(&app, "/taxpayerapi/certificate.cer").await;
    let key = fetch(&app, "/taxpayerapi/public-key.pem").await;
    assert_eq!(pem_der(&pem.body, "CERTIFICATE"), der.body);

    // A certificate carries its SubjectPublicKeyInfo verbatim.
    let spki = pem_der(&key.body, "PUBLIC KEY");
    assert!(spki.len() > 256, "an RSA-2048 SPKI");
    assert!(
        der.body.windows(spki.len()).any(|w| w == spki.as_slice()),
        "the certificate holds the served public key"
    );

    // And that key is the one the gateway decrypts app keys with: a client's 344-character field.
    let app_key = *b"1k6ogtiOoRUL76qYOsr6JQ287Q423BJx";
    let field = rsa_key::encrypt_app_key(std::str::from_utf8(&key.body).unwrap(), &app_key).unwrap();
    assert_eq!(field.len(), 344);
    assert_eq!(
        app.state.gstn.decrypt_app_key(&field).map(|c| c.to_vec()),
        Ok(vec![app_key])
    );
}

async fn a_restart_on_the_same_database_serves_the_same_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = fetch(&app, "/taxpayerapi/public-key.pem").await;
    let der = fetch(&app, "/taxpayerapi/certificate.cer").await;

    let restarted = spawn_on(app.database_url.clone(), app.guard(), app.clock.clone(), |_| {}).await;
    let key_again = fetch(&restarted, "/taxpayerapi/public-key.pem").await;
    let der_again = fetch(&restarted, "/taxpayerapi/certificate.cer").await;
    assert_eq!(key_again.body, key.body);
    assert_eq!(der_again.body, der.body, "the certificate is byte-identical too");
    assert_eq!(gstn_key_rows(&restarted).await.len(), 1, "no second key was made");

    let field = rsa_key::encrypt_app_key(std::str::from_utf8(&key.body).unwrap(), &[7u8; 32]).unwrap();
    assert_eq!(
        restarted.state.gstn.decrypt_app_key(&field).map(|c| c.to_vec()),
        Ok(vec![[7u8; 32]])
    );
}

async fn a_rotated_key_is_published_and_the_old_one_still_decrypts(backend: Backend) {
    let app = spawn_app(backend).await;
    let old_pem = String::from_utf8(fetch(&app, "/taxpayerapi/public-key.pem").await.body).unwrap();
    let settings = gsp_gateway_api::Settings {
        database_url: app.database_url.clone(),
        ..Default::default()
    };
    let code = gsp_gateway_api::cli::execute(Command::Keys(KeysCommand::RotateGstn), settings)
        .await
        .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let rows = gstn_key_rows(&app).await;
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), vec![false, true]);

    // The change feed may have reloaded the keys already (the rotation is an audited change); either
    // way, after this reload the instance holds both keys.
    gstn::reload(&app.state).await.unwrap();
    let new_pem = String::from_utf8(fetch(&app, "/taxpayerapi/public-key.pem").await.body).unwrap();
    assert_ne!(new_pem, old_pem);
    assert_eq!(app.state.gstn.kids(), vec![rows[1].0.clone(), rows[0].0.clone()]);
    for pem in [&old_pem, &new_pem] {
        let field = rsa_key::encrypt_app_key(pem, &[5u8; 32]).unwrap();
        // During the grace period the active key can add a synthetic candidate (see rsa_key.rs).
        assert!(
            app.state
                .gstn
                .decrypt_app_key(&field)
                .unwrap()
                .contains(&[5u8; 32])
        );
    }

    // After the grace period only the new key is left.
    app.advance(rsa_key::GRACE + chrono::TimeDelta::minutes(1));
    assert!(gstn::reload(&app.state).await.unwrap());
    assert_eq!(app.state.gstn.kids(), vec![rows[1].0.clone()]);
    let field = rsa_key::encrypt_app_key(&old_pem, &[5u8; 32]).unwrap();
    assert!(
        !app.state
            .gstn
            .decrypt_app_key(&field)
            .is_ok_and(|c| c.contains(&[5u8; 32]))
    );
}
