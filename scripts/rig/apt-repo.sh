#!/usr/bin/env bash
# Build a signed apt repository from a directory of .deb files, laid out like the vendor's.
#   apt-repo.sh NAME DEB_DIR COMPONENT SUITE...   ->  $RIG_CACHE/apt/NAME/{gpg,dists/SUITE/COMPONENT/...,pool/}
#   apt-repo.sh NAME DEB_DIR --flat PATH          ->  $RIG_CACHE/apt/NAME/{gpg,PATH/ARCH/{*.deb,Packages,InRelease,...}}
#     (a flat repository per architecture, as NVIDIA's: `deb [signed-by=...] URL/PATH/$(ARCH) /`)
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
gpg --batch --with-colons --fingerprint 2>/dev/null | awk -F: '$1 == "fpr" {print $10; exit}' >"$repo/gpg.fingerprint"
if [ "$component" = "--flat" ]; then
  for arch in amd64 arm64; do
    d="$repo/$1/$arch"
    mkdir -p "$d"
    cp "$repo"/pool/*_"$arch".deb "$repo"/pool/*_all.deb "$d/" 2>/dev/null || true
    (cd "$d" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null) >"$d/Packages"
    [ -s "$d/Packages" ] || [ "$arch" != amd64 ] || { log "no packages for $arch in $debs"; exit 1; }
    gzip -9kf "$d/Packages"
    (cd "$d" && apt-ftparchive -o APT::FTPArchive::Release::Origin="comfyops-rig" release . >../Release.tmp)
    mv "$d/../Release.tmp" "$d/Release"
    gpg --batch --yes --clearsign -o "$d/InRelease" "$d/Release"
    gpg --batch --yes -abs -o "$d/Release.gpg" "$d/Release"
  done
  rm -rf "$repo/pool"
  log "flat apt repo $name/$1: $(ls "$d" | grep -c '\.deb$') packages"
  exit 0
fi
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
