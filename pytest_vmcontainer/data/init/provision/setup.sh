#!/bin/sh
# lighttpd serving one page on port 8080, the same way in the VM and in the container.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends lighttpd procps iproute2
sed -i 's/^server.port.*/server.port = 8080/' /etc/lighttpd/lighttpd.conf
grep -q '^server.port = 8080' /etc/lighttpd/lighttpd.conf || echo 'server.port = 8080' >> /etc/lighttpd/lighttpd.conf
install -m 0644 "$here/index.html" /var/www/html/index.html
lighttpd -tt -f /etc/lighttpd/lighttpd.conf
if [ -d /run/systemd/system ]; then
    systemctl enable lighttpd
    systemctl restart lighttpd
fi
apt-get clean
rm -rf /var/lib/apt/lists/*
