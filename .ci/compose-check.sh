#!/usr/bin/env bash
# Static checks of the production shape (no container engine needed): docker-compose.yml, deploy/nginx.conf,
# Dockerfile and .dockerignore. Exits non-zero on the first failing group, after printing every problem
# of that group.
#
# - `docker compose config -q` when a compose client is installed (it needs no engine);
# - always: the compose file's structure, checked in Python against what this project needs;
# - nginx.conf: `nginx -t` when nginx >= 1.27.3 is installed, else NGINX's own parser (crossplane);
# - Dockerfile: grep-level sanity (no hadolint here);
# - docs/operating.md: documents every environment variable and every metric.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A throwaway token for `${GSP_GATEWAY_ADMIN_TOKEN:?...}`: the check must not need the real secret.
export GSP_GATEWAY_ADMIN_TOKEN="${GSP_GATEWAY_ADMIN_TOKEN:-compose-check-placeholder-token}"

step "docker compose config"
if docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config -q
  echo "ok: docker compose accepts docker-compose.yml"
else
  echo "skipped: no docker compose client here; the Python checks below cover the structure"
fi

step "Python for the structural checks (pyyaml, crossplane)"
PY=python3
if ! "$PY" -c 'import yaml, crossplane' >/dev/null 2>&1; then
  # A private venv under target/ (ignored by git): works where pip may not touch the system Python.
  venv=target/compose-check-venv
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'pyyaml==6.0.3' 'crossplane==0.5.8'
  PY="$venv/bin/python"
fi
"$PY" -c 'import yaml, crossplane; print("ok: pyyaml", yaml.__version__)'

step "docker-compose.yml structure"
"$PY" - <<'PYTHON'
import os
import re
import sys

import yaml

problems = []


def fail(message):
    problems.append(message)


with open("docker-compose.yml", encoding="utf-8") as f:
    raw = f.read()
try:
    compose = yaml.safe_load(raw)
except yaml.YAMLError as error:
    sys.exit(f"FAIL: docker-compose.yml is not valid YAML: {error}")
if not isinstance(compose, dict) or not isinstance(compose.get("services"), dict):
    sys.exit("FAIL: docker-compose.yml has no services mapping")
services = compose["services"]

# Compose interpolates every `$`: a literal one must be written `$$`, a variable `${NAME...}` (braced here,
# so a shell variable in a healthcheck is never substituted by compose by accident).
for number, line in enumerate(raw.splitlines(), 1):
    if line.lstrip().startswith("#"):
        continue
    if re.search(r"\$(?!\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?+][^}]*)?\})", line.replace("$$", "")):
        fail(f"line {number}: a `$` compose would interpolate (write `$$`, or `${{NAME}}`): {line.strip()}")

# Settings the gateway reads from its environment: every `env = "..."` in settings.rs and cli.rs, and
# RUST_LOG (the log filter read by tracing-subscriber in cli.rs).
known_env = {"DATABASE_URL", "RUST_LOG"}
for source in ("api/src/settings.rs", "api/src/cli.rs"):
    with open(source, encoding="utf-8") as f:
        known_env.update(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', f.read()))
if len(known_env) < 10:
    fail(f"found only {sorted(known_env)} as settings in api/src/settings.rs: has the format changed?")


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def depends_on(service):
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def command(service):
    cmd = service.get("command")
    return cmd.split() if isinstance(cmd, str) else list(cmd or [])


def healthcheck_test(service):
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return []
    test = check.get("test") or []
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    if test and test[0] == "NONE":
        return []
    return test


for name in ("postgres", "migrate", "gateway-1", "gateway-2", "nginx"):
    if name not in services:
        fail(f"service {name} is missing")

conditions = {"service_started", "service_healthy", "service_completed_successfully"}
for name, service in services.items():
    if not isinstance(service, dict):
        fail(f"service {name} is not a mapping")
        continue
    if "image" not in service and "build" not in service:
        fail(f"service {name} has neither image nor build")
    build = service.get("build")
    if build is not None:
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if not os.path.isfile(os.path.join(context, dockerfile)):
            fail(f"service {name} builds from {context}/{dockerfile}, which does not exist")
    for dep, spec in depends_on(service).items():
        if dep not in services:
            fail(f"service {name} depends on {dep}, which is not a service")
        condition = (spec or {}).get("condition", "service_started")
        if condition not in conditions:
            fail(f"service {name}: unknown depends_on condition {condition}")
        if condition == "service_healthy" and dep in services and not healthcheck_test(services[dep]):
            fail(f"service {name} waits for {dep} to be healthy, but {dep} has no healthcheck")
    for volume in service.get("volumes") or []:
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/")):
            if not os.path.exists(source):
                fail(f"service {name} mounts {source}, which does not exist")
        elif source and source not in (compose.get("volumes") or {}):
            fail(f"service {name} uses volume {source}, not declared under top-level volumes")

postgres = services.get("postgres") or {}
if not str(postgres.get("image", "")).startswith("postgres:16"):
    fail("postgres must run the postgres:16 image")
if "pg_isready" not in " ".join(map(str, healthcheck_test(postgres))):
    fail("postgres needs a pg_isready healthcheck")
if not any(isinstance(v, str) and not v.startswith((".", "/")) for v in postgres.get("volumes") or []):
    fail("postgres must keep its data in a named volume")

migrate = services.get("migrate") or {}
if command(migrate) != ["migrate"]:
    fail(f"migrate must run the `migrate` command, not {command(migrate)}")
if str(migrate.get("restart", "")) != "no":
    fail('migrate must be one-shot: restart: "no"')
if depends_on(migrate).get("postgres", {}).get("condition") != "service_healthy":
    fail("migrate must wait for postgres to be healthy")

with open("Dockerfile", encoding="utf-8") as f:
    dockerfile_text = f.read()

gateway_image = None
for name in ("migrate", "gateway-1", "gateway-2"):
    service = services.get(name) or {}
    env = environment(service)
    for key in env:
        if key not in known_env:
            fail(f"{name}: {key} is not a setting of the gateway (see api/src/settings.rs)")
    if env.get("DATABASE_URL") != "postgres://gsp:gsp@postgres:5432/gsp":
        fail(f"{name}: DATABASE_URL must point at the postgres service")
    image = (service.get("image"), str(service.get("build")))
    if gateway_image is None:
        gateway_image = image
    elif image != gateway_image:
        fail(f"{name} must run the same image as migrate")

for name in ("gateway-1", "gateway-2"):
    service = services.get(name) or {}
    env = environment(service)
    if not str(env.get("GSP_GATEWAY_ADMIN_TOKEN", "")).startswith("${GSP_GATEWAY_ADMIN_TOKEN:?"):
        fail(f"{name}: GSP_GATEWAY_ADMIN_TOKEN must come from ${{GSP_GATEWAY_ADMIN_TOKEN:?...}}")
    if not str(env.get("GSP_GATEWAY_BIND", "0.0.0.0:8080")).startswith("0.0.0.0:"):
        fail(f"{name}: GSP_GATEWAY_BIND must listen on all interfaces inside the container")
    if depends_on(service).get("migrate", {}).get("condition") != "service_completed_successfully":
        fail(f"{name} must wait for migrate to complete successfully")
    test = healthcheck_test(service)
    if not test:
        fail(f"{name} needs a healthcheck")
    for word in test[1:]:
        if word.startswith("/") and word not in dockerfile_text:
            fail(f"{name}'s healthcheck runs {word}, which the Dockerfile does not create")
    if command(service) not in ([], ["serve"]):
        fail(f"{name} must run `serve`, not {command(service)}")
    if service.get("ports"):
        fail(f"{name} must not publish ports: traffic comes through nginx")

nginx = services.get("nginx") or {}
if not str(nginx.get("image", "")).startswith("nginx:1.27"):
    fail("nginx must run the nginx:1.27 image (1.27.3+ for `resolve` in upstream)")
mounts = [v for v in nginx.get("volumes") or [] if isinstance(v, str)]
if not any(v.split(":")[0] in ("./deploy/nginx.conf", "deploy/nginx.conf") for v in mounts):
    fail("nginx must mount ./deploy/nginx.conf")
if not any(str(p).split(":")[-1].split("/")[0] == "8080" for p in nginx.get("ports") or []):
    fail("nginx must publish port 8080")
for replica in ("gateway-1", "gateway-2"):
    if replica not in depends_on(nginx):
        fail(f"nginx must depend on {replica}")

with open("deploy/nginx.conf", encoding="utf-8") as f:
    nginx_conf = f.read()
for replica in ("gateway-1", "gateway-2"):
    if not re.search(rf"^\s*server\s+{replica}:8080\b", nginx_conf, re.M):
        fail(f"deploy/nginx.conf: the upstream must list {replica}:8080")
for required in (r"underscores_in_headers\s+on;", r"client_max_body_size\s+1m;",
                 r"proxy_set_header\s+X-Request-Id\s", r"proxy_set_header\s+X-Forwarded-For\s",
                 r"proxy_read_timeout\s", r"proxy_connect_timeout\s", r"listen\s+8080;"):
    if not re.search(required, nginx_conf):
        fail(f"deploy/nginx.conf lacks {required}")

for problem in problems:
    print(f"FAIL: {problem}")
if problems:
    sys.exit(1)
print(f"ok: {len(services)} services; gateway environment uses only known settings ({len(known_env)} known)")
PYTHON

step "deploy/nginx.conf syntax"
nginx_ok=""
if command -v nginx >/dev/null 2>&1; then
  version="$(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')"
  if [ "$(printf '%s\n1.27.3\n' "$version" | sort -V | head -n1)" = "1.27.3" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    nginx -t -q -p "$tmp" -c "$PWD/deploy/nginx.conf" -g "pid $tmp/nginx.pid;"
    echo "ok: nginx $version -t"
    nginx_ok=1
  else
    echo "nginx $version is older than 1.27.3 (no upstream \`resolve\`); using the parser instead"
  fi
fi
if [ -z "$nginx_ok" ]; then
  "$PY" - <<'PYTHON'
import sys

import crossplane

# Strict: unknown directives fail too. crossplane 0.5.8 mistakes the entries of a `map` block for
# directives, so those (and only those) are let through.
strict = crossplane.parse("deploy/nginx.conf", strict=True, combine=True)
loose = crossplane.parse("deploy/nginx.conf", combine=True)
map_lines = set()


def walk(block):
    for directive in block:
        if directive["directive"] == "map":
            map_lines.update(d["line"] for d in directive.get("block", []))
        walk(directive.get("block", []))


for config in loose["config"]:
    walk(config["parsed"])
errors = [
    e for e in strict["errors"]
    if not (e["error"].startswith("unknown directive") and e["line"] in map_lines)
]
errors += [e for e in loose["errors"] if e not in errors]
for error in errors:
    print(f"FAIL: {error['error']}")
if errors:
    sys.exit(1)
print("ok: deploy/nginx.conf parses (crossplane, strict)")
PYTHON
fi

step "docs/operating.md names every setting and metric"
"$PY" - <<'PYTHON'
import re
import sys

with open("docs/operating.md", encoding="utf-8") as f:
    doc = f.read()
wanted = set()
for source in ("api/src/settings.rs", "api/src/cli.rs"):
    with open(source, encoding="utf-8") as f:
        wanted.update(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', f.read()))
wanted.discard("GSP_GATEWAY_NEW_PASSWORD")  # an input of `admin create-taxpayer`, not a setting
# Settings no flag or variable sets (a TOML file does) go in the TOML-only table under their own name.
with open("api/src/settings.rs", encoding="utf-8") as f:
    settings_rs = f.read()


def fields(struct):
    body = settings_rs.split(f"pub struct {struct}", 1)[1].split("\n}", 1)[0]
    return set(re.findall(r"^\s*pub (\w+):", body, re.M))


wanted.update(fields("Settings") - fields("ServeArgs"))
with open("api/src/metrics.rs", encoding="utf-8") as f:
    wanted.update(re.findall(r'^const [A-Z_]+: &str = "([a-z_]+)";', f.read(), re.M))
missing = sorted(name for name in wanted if f"`{name}`" not in doc)
for name in missing:
    print(f"FAIL: docs/operating.md does not document `{name}`")
if missing:
    sys.exit(1)
print(f"ok: {len(wanted)} settings and metrics documented")
PYTHON

step "Dockerfile and .dockerignore"
problems=0
check() { # check DESCRIPTION EXTENDED-REGEX [FILE]
  if ! grep -Eq -- "$2" "${3:-Dockerfile}"; then
    echo "FAIL: ${3:-Dockerfile}: $1"
    problems=$((problems + 1))
  fi
}
if [ "$(grep -Ec '^FROM ' Dockerfile)" -lt 2 ]; then
  echo "FAIL: Dockerfile: not multi-stage (fewer than two FROM lines)"
  problems=$((problems + 1))
fi
check "a named builder stage" '^FROM [^ ]+ AS builder'
check "the runtime copies from the builder" '^COPY --from=builder '
check "a slim Debian runtime" '^FROM debian:[^ ]*-slim'
check "the locked release build of the binary" 'cargo build --release -p gsp-gateway-api --locked'
check "libpq5 in the runtime" 'libpq5'
check "ca-certificates in the runtime" 'ca-certificates'
check "a HEALTHCHECK" '^HEALTHCHECK( |$)'
check "EXPOSE 8080" '^EXPOSE 8080$'
check "the gsp-gateway entrypoint" '^ENTRYPOINT \[?"?[^ ]*gsp-gateway"?'
check "GSP_GATEWAY_BIND=0.0.0.0:8080" 'GSP_GATEWAY_BIND=0\.0\.0\.0:8080'
last_user="$(grep -E '^USER ' Dockerfile | tail -n1 | awk '{print $2}')"
case "${last_user%%:*}" in
  "" | root | 0)
    echo "FAIL: Dockerfile: the final USER must not be root (found '${last_user:-none}')"
    problems=$((problems + 1))
    ;;
esac
if grep -Eq '^HEALTHCHECK +NONE' Dockerfile; then
  echo "FAIL: Dockerfile: HEALTHCHECK NONE"
  problems=$((problems + 1))
fi
check "target/ ignored" '^/?target/?$' .dockerignore
check ".git/ ignored" '^/?\.git/?$' .dockerignore
check "*.db ignored" '^\*\.db$' .dockerignore
if [ "$problems" -ne 0 ]; then
  exit 1
fi
echo "ok: Dockerfile is multi-stage, runs as ${last_user}, has a HEALTHCHECK; .dockerignore keeps target/ and .git/ out"

printf '\nok: the compose shape checks passed\n'
