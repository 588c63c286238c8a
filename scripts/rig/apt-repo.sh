#!/usr/bin/env bash
# Build a signed apt repository from a directory of .deb files, laid out like the vendor's.
#   apt-repo.sh NAME DEB_DIR COMPONENT SUITE...   ->  $RIG_CACHE/apt/NAME/{gpg,dists/SUITE/COMPONENT/...,pool/}
# All repos share one rig signing key (its public half is NAME/gpg, ASCII-armoured like Docker's).
set -euo pipefail
. "$(dirname "$0")/common.sh"
name=$1 debs=$2 component=$3
shift 3

export GNUPGHOME="$RIG_GNUPGHOME"
if [ ! -f "$GNUPGHOME/.key-made" ]; then
  mkdir -p -m 0700 "$GNUPGHOME"
  gpg --batch --passphrase '' --quick-gen-key "comfyops test rig <rig@comfyops.invalid>" rsa3072 sign never 2>/dev/null
  touch "$GNUPGHOME/.key-made"
fi

repo="$RIG_APT_DIR/$name"
rm -rf "$repo"
mkdir -p "$repo/pool"
cp "$debs"/*.deb "$repo/pool/"
gpg --batch --armor --export >"$repo/gpg"
for suite in "$@"; do
  for arch in amd64 arm64; do
    d="$repo/dists/$suite/$component/binary-$arch"
    mkdir -p "$d"
    # --arch selects by file name (*_ARCH.deb, *_all.deb), as dpkg-deb --build DIR names them.
    (cd "$repo" && dpkg-scanpackages --multiversion --arch "$arch" pool /dev/null 2>/dev/null) >"$d/Packages"
    [ -s "$d/Packages" ] || [ "$arch" != amd64 ] || { log "no packages for $arch in $debs"; exit 1; }
    gzip -9kf "$d/Packages"
  done
  (cd "$repo/dists/$suite" && apt-ftparchive \
    -o APT::FTPArchive::Release::Suite="$suite" -o APT::FTPArchive::Release::Codename="$suite" \
    -o APT::FTPArchive::Release::Components="$component" -o APT::FTPArchive::Release::Architectures="amd64 arm64" \
    -o APT::FTPArchive::Release::Origin="comfyops-rig" release . >../Release.tmp) # outside: it would list itself
  mv "$repo/dists/Release.tmp" "$repo/dists/$suite/Release"
  gpg --batch --yes --clearsign -o "$repo/dists/$suite/InRelease" "$repo/dists/$suite/Release"
  gpg --batch --yes -abs -o "$repo/dists/$suite/Release.gpg" "$repo/dists/$suite/Release"
done
log "apt repo $name: $(ls "$repo/pool" | wc -l) packages, suites: $*"
