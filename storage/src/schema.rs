//! The diesel schema, one for both backends (see `migrations/{sqlite,postgres}`).

diesel::table! {
    taxpayers (id) {
        id -> Text,
        gstin -> Text,
        username -> Text,
        password_hash -> Text,
        password_changed_at -> Timestamp,
        legal_name -> Text,
        trade_name -> Nullable<Text>,
        email -> Nullable<Text>,
        mobile -> Nullable<Text>,
        registration_status -> Text,
        failed_logins -> Integer,
        locked_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    gsp_clients (client_id) {
        client_id -> Text,
        name -> Text,
        secret_hash -> Text,
        enabled -> Bool,
        created_at -> Timestamp,
        gstn_numeric_status_cd -> Nullable<Bool>,
    }
}

diesel::table! {
    api_access (taxpayer_id) {
        taxpayer_id -> Text,
        enabled -> Bool,
        duration_hours -> Nullable<Integer>,
        enabled_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        taxpayer_id -> Text,
        gsp_client_id -> Text,
        channel -> Text,
        created_at -> Timestamp,
        last_used_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        revoked_reason -> Nullable<Text>,
        gstn_token_hash -> Nullable<Text>,
        gstn_app_key -> Nullable<Text>,
        gstn_sek -> Nullable<Text>,
        gstn_token_expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        gsp_client_id -> Text,
        issued_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    otp_challenges (id) {
        id -> Text,
        taxpayer_id -> Text,
        gsp_client_id -> Text,
        code_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        attempts_left -> Integer,
        state -> Text,
        purpose -> Text,
        session_id -> Nullable<Text>,
        pan -> Nullable<Text>,
        form_type -> Nullable<Text>,
    }
}

diesel::table! {
    otp_inbox (challenge_id) {
        challenge_id -> Text,
        taxpayer_id -> Text,
        gsp_name -> Text,
        code -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        purpose -> Text,
        pan -> Nullable<Text>,
        form_type -> Nullable<Text>,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        purpose -> Text,
        algorithm -> Text,
        private_key -> Text,
        public_key -> Text,
        created_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
        publish_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        gstin -> Nullable<Text>,
        gsp_client_id -> Nullable<Text>,
        session_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        request_id -> Nullable<Text>,
        detail -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    audit_chain (id) {
        id -> Integer,
        last_id -> BigInt,
        last_hash -> Text,
    }
}

diesel::joinable!(api_access -> taxpayers (taxpayer_id));
diesel::joinable!(sessions -> taxpayers (taxpayer_id));
diesel::joinable!(sessions -> gsp_clients (gsp_client_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(otp_challenges -> taxpayers (taxpayer_id));
diesel::joinable!(otp_inbox -> otp_challenges (challenge_id));

diesel::allow_tables_to_appear_in_same_query!(
    taxpayers,
    gsp_clients,
    api_access,
    sessions,
    refresh_tokens,
    otp_challenges,
    otp_inbox,
    signing_keys,
    audit_events,
    audit_chain,
);
