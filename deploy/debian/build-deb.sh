#!/usr/bin/env bash
# Builds the Debian package of custosd and the custos CLI with dpkg-deb:
#   deploy/debian/build-deb.sh [--debug]  ->  target/debian/custos_VERSION_ARCH.deb
# --debug packages the debug binaries already built (what the test command
# does, to avoid a second, release build); without it cargo builds release
# binaries with the TPM backend.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=release
compress=()
if [ "${1:-}" = "--debug" ]; then
  profile=debug
  compress=(-Zgzip -z1)   # debug binaries are large; xz would take minutes
else
  cargo build --release --bins --features custos-daemon/tpm
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
root=target/debian/custos_${version}_${arch}
rm -rf "$root" && mkdir -p "$root/DEBIAN"

install -D -m 0755 "target/$profile/custosd" "$root/usr/bin/custosd"
install -D -m 0755 "target/$profile/custos" "$root/usr/bin/custos"
install -D -m 0644 deploy/systemd/custosd.service "$root/lib/systemd/system/custosd.service"
install -D -m 0644 deploy/systemd/custosd.socket "$root/lib/systemd/system/custosd.socket"
install -D -m 0640 deploy/custos.toml.example "$root/etc/custos/custos.toml"
install -D -m 0644 README.md "$root/usr/share/doc/custos/README.md"
install -D -m 0644 deploy/debian/copyright "$root/usr/share/doc/custos/copyright"
for f in hsm-profiles/*.toml; do
  install -D -m 0644 "$f" "$root/usr/share/custos/hsm-profiles/$(basename "$f")"
done

# Depends: the packages that ship the shared libraries the binaries link.
deps=$(for b in "$root/usr/bin/custosd" "$root/usr/bin/custos"; do
  ldd "$b" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')
size=$(du -sk "$root" | cut -f1)

cat > "$root/DEBIAN/control" <<CONTROL
Package: custos
Version: $version
Architecture: $arch
Maintainer: Custos developers <custos@localhost>
Installed-Size: $size
Depends: ${deps}, adduser
Recommends: softhsm2
Section: admin
Priority: optional
Description: hardware-backed key custody and signing daemon for FAPI servers
 custosd keeps an OAuth 2.0 / OpenID Connect authorization server's signing
 keys in a PKCS#11 HSM or a TPM 2.0 and signs ID tokens, JARM responses,
 access tokens, introspection responses, request objects, client assertions
 and HTTP messages with the rules of the OpenID FAPI profiles, over gRPC on a
 Unix socket. The custos CLI manages keysets and rotation.
CONTROL
echo /etc/custos/custos.toml > "$root/DEBIAN/conffiles"
install -m 0755 deploy/debian/postinst "$root/DEBIAN/postinst"
install -m 0755 deploy/debian/postrm "$root/DEBIAN/postrm"

mkdir -p target/debian
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "target/debian/custos_${version}_${arch}.deb" >/dev/null
echo "target/debian/custos_${version}_${arch}.deb"
