#!/usr/bin/env bash
# The taxpayer page in headless Chromium: installs Debian's Chromium and ChromeDriver when they are
# missing, then runs the ignored browser test. Screenshots land in target/browser-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  echo "installing chromium, chromium-driver and ca-certificates"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver ca-certificates
fi
/usr/bin/chromium --version
/usr/bin/chromedriver --version

# The browser test's client (fantoccini over rustls) reads the system's CA store even for plain
# http://127.0.0.1, which is why ca-certificates is part of the install above.
cargo test -p gsp-gateway-tests --test it -- --ignored browser::
