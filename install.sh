#!/bin/sh
# LMX installer.
#
#   curl -fsSL <release-url>/install.sh | sh
#   curl -fsSL <release-url>/install.sh | sh -s -- --version 1.2.0 --service
#
# Options: --version V, --channel C (default stable), --prefix DIR (default ~/.lmx; lmx goes to
# DIR/bin/lmx), --service (install and start the background service), --no-modify-path,
# --require-signature (fail instead of warning when the signature cannot be checked), --help.
# LMX_INSTALL_BASE_URL overrides the release URL (mirrors, tests).
#
# What it does: picks the build for this OS and CPU (arm64 on an Apple Silicon Mac even from a
# shell running under Rosetta), downloads the version's SHA256SUMS and checks its Ed25519
# signature with openssl when openssl can (OpenSSL 3; macOS's LibreSSL cannot, and then only the
# checksum protects the download), downloads the archive to a temp folder, checks its SHA-256,
# runs the new lmx --version, and renames it into place, keeping the previous one as lmx.old.
# Running it again upgrades in place.
#
# The whole script is functions; the only command at top level is the braced call to main on the
# last line. A download cut off anywhere defines functions at most and runs nothing: the shell
# reads a { … } group to its closing brace before running any of it, so even a cut right after
# the word "main" is a syntax error instead of a call without the arguments.

release_defaults() {
  # Filled in by scripts/release.ts when it publishes this script.
  DEFAULT_BASE_URL=""
  RELEASE_PUBLIC_KEYS=""
}

say() {
  printf '%s\n' "$*"
}

warn() {
  printf 'lmx install: warning: %s\n' "$*" >&2
}

die() {
  printf 'lmx install: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
Install lmx, the headless local LLM server.

Usage: install.sh [--version V] [--channel C] [--prefix DIR] [--service] [--no-modify-path] [--require-signature]

  --version V          install version V (default: the latest on the channel)
  --channel C          release channel (default: stable)
  --prefix DIR         install to DIR/bin/lmx (default: ~/.lmx)
  --service            also install and start the background service (lmx service install)
  --no-modify-path     do not add DIR/bin to PATH in shell startup files
  --require-signature  fail if the release signature cannot be verified (needs OpenSSL 3)

Environment: LMX_INSTALL_BASE_URL overrides where releases are downloaded from.
EOF
}

detect_target() {
  os=$(uname -s)
  cpu=$(uname -m)
  case "$os" in
    Darwin) os=darwin ;;
    Linux) os=linux ;;
    *) die "unsupported operating system: $os (lmx runs on macOS and Linux)" ;;
  esac
  case "$cpu" in
    x86_64 | amd64) cpu=x64 ;;
    arm64 | aarch64) cpu=arm64 ;;
    *) die "unsupported CPU: $cpu (lmx runs on arm64 and x86_64)" ;;
  esac
  if [ "$os" = darwin ] && [ "$cpu" = x64 ]; then
    # A shell under Rosetta 2 reports x86_64 on Apple Silicon; the native build is the right one.
    if [ "$(sysctl -n sysctl.proc_translated 2>/dev/null)" = 1 ] || [ "$(sysctl -n hw.optional.arm64 2>/dev/null)" = 1 ]; then
      cpu=arm64
    fi
  fi
  if [ "$os" = linux ] && ldd --version 2>&1 | grep -qi musl; then
    die "this Linux uses musl libc (Alpine?); lmx's Linux builds need glibc"
  fi
  TARGET="$os-$cpu"
}

# fetch URL FILE: download, failing on HTTP errors.
fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 --connect-timeout 20 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    die "need curl or wget to download lmx"
  fi
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d ' ' -f 1
  elif command -v openssl >/dev/null 2>&1; then
    openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1
  else
    die "need sha256sum, shasum or openssl to check the download"
  fi
}

# True when this machine can check Ed25519 signatures (OpenSSL 3's pkeyutl -rawin).
can_verify() {
  [ -n "$RELEASE_PUBLIC_KEYS" ] || return 1
  command -v openssl >/dev/null 2>&1 || return 1
  openssl pkeyutl -help 2>&1 | grep -q -- '-rawin'
}

# verify_signature FILE SIGFILE: the .sig line is "lmx-signature-v1 ed25519 <key id> <base64>".
verify_signature() {
  read -r magic algorithm _keyid signature <"$2" || return 1
  [ "$magic" = lmx-signature-v1 ] && [ "$algorithm" = ed25519 ] || return 1
  printf '%s' "$signature" | openssl base64 -d -A >"$tmp/signature.bin" 2>/dev/null || return 1
  for key in $RELEASE_PUBLIC_KEYS; do
    printf '%s\n' '-----BEGIN PUBLIC KEY-----' "$key" '-----END PUBLIC KEY-----' >"$tmp/key.pem"
    if openssl pkeyutl -verify -pubin -inkey "$tmp/key.pem" -rawin -in "$1" -sigfile "$tmp/signature.bin" >/dev/null 2>&1; then
      return 0
    fi
  done
  return 1
}

# fetch_verified URL FILE: download a file and, when possible, its signature, which must match.
fetch_verified() {
  fetch "$1" "$2" || return 1
  if [ "$verify" = 1 ]; then
    fetch "$1.sig" "$2.sig" || die "$1 has no signature ($1.sig is missing); refusing to install"
    verify_signature "$2" "$2.sig" || die "the signature of $1 does not verify with the release key; refusing to install"
  fi
}

# latest_version MANIFEST CHANNEL: reads "latest": { "<channel>": "<version>" } of the manifest,
# which scripts/release.ts writes one key per line.
latest_version() {
  awk -v channel="$2" '
    /"latest": *\{ *\}/ { exit }
    /"latest": *\{/ { inside = 1; next }
    inside && /\}/ { exit }
    inside {
      line = $0
      if (index(line, "\"" channel "\"") > 0) {
        sub(/^[^:]*: *"/, "", line)
        sub(/".*$/, "", line)
        print line
        exit
      }
    }
  ' "$1"
}

# Shell startup files to extend, one per line, for the shells this machine has.
rc_files() {
  shell_name=${SHELL##*/}
  if command -v zsh >/dev/null 2>&1 || [ "$shell_name" = zsh ]; then
    printf '%s\n' "${ZDOTDIR:-$HOME}/.zshrc"
  fi
  if command -v bash >/dev/null 2>&1; then
    if [ -f "$HOME/.bashrc" ] || [ "$shell_name" = bash ]; then
      printf '%s\n' "$HOME/.bashrc"
    fi
    # macOS Terminal starts bash as a login shell, which reads .bash_profile and not .bashrc.
    if [ -f "$HOME/.bash_profile" ] || { [ "$shell_name" = bash ] && [ "$os" = darwin ]; }; then
      printf '%s\n' "$HOME/.bash_profile"
    fi
  fi
}

add_line() {
  if [ -f "$1" ] && grep -qxF "$2" "$1"; then
    return 0
  fi
  mkdir -p "$(dirname "$1")" || return 1
  printf '\n# added by the lmx installer\n%s\n' "$2" >>"$1" || return 1
  say "  added $bindir to PATH in $1"
}

modify_path() {
  case "$bindir" in
    "$HOME"/*) shown="\$HOME/${bindir#"$HOME"/}" ;;
    *) shown=$bindir ;;
  esac
  rc_files | while IFS= read -r rc; do
    add_line "$rc" "export PATH=\"$shown:\$PATH\"" || warn "could not update $rc"
  done
  if command -v fish >/dev/null 2>&1; then
    fish_dir="${XDG_CONFIG_HOME:-$HOME/.config}/fish/conf.d"
    add_line "$fish_dir/lmx.fish" "fish_add_path \"$bindir\"" || warn "could not update $fish_dir/lmx.fish"
  fi
}

main() {
  set -u
  release_defaults
  version=""
  channel="stable"
  prefix="${HOME:?HOME is not set}/.lmx"
  service=0
  change_path=1
  require_signature=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --version | --channel | --prefix)
        [ $# -ge 2 ] || die "$1 needs a value"
        case "$1" in
          --version) version=$2 ;;
          --channel) channel=$2 ;;
          --prefix) prefix=$2 ;;
        esac
        shift 2
        ;;
      --version=*) version=${1#*=}; shift ;;
      --channel=*) channel=${1#*=}; shift ;;
      --prefix=*) prefix=${1#*=}; shift ;;
      --service) service=1; shift ;;
      --no-modify-path) change_path=0; shift ;;
      --require-signature) require_signature=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option: $1 (see --help)" ;;
    esac
  done
  case "$version" in
    *[!0-9A-Za-z.-]*) die "not a version: $version" ;;
  esac
  case "$channel" in
    "" | *[!a-z0-9-]*) die "not a channel: $channel" ;;
  esac
  case "$prefix" in
    /*) ;;
    *) prefix="$(pwd)/$prefix" ;;
  esac
  base=${LMX_INSTALL_BASE_URL:-$DEFAULT_BASE_URL}
  base=${base%/}
  [ -n "$base" ] || die "no release URL: set LMX_INSTALL_BASE_URL to the folder that holds manifest.json"

  detect_target
  tmp=$(mktemp -d 2>/dev/null || mktemp -d -t lmx-install) || die "cannot create a temporary folder"
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT TERM

  verify=0
  if can_verify; then
    verify=1
  elif [ "$require_signature" = 1 ]; then
    die "cannot verify the release signature here (needs OpenSSL 3 and a published install.sh with release keys)"
  else
    warn "cannot verify the release signature here (needs OpenSSL 3); relying on the SHA-256 checksums only"
  fi

  if [ -z "$version" ]; then
    fetch_verified "$base/manifest.json" "$tmp/manifest.json" || die "cannot download $base/manifest.json"
    version=$(latest_version "$tmp/manifest.json" "$channel")
    [ -n "$version" ] || die "no release on channel \"$channel\" at $base"
    case "$version" in
      *[!0-9A-Za-z.-]*) die "the manifest names an invalid version: $version" ;;
    esac
  fi

  archive="lmx-$TARGET.tar.gz"
  say "Installing lmx $version for $TARGET from $base"
  fetch_verified "$base/$version/SHA256SUMS" "$tmp/SHA256SUMS" || die "lmx $version is not published at $base (no $version/SHA256SUMS)"
  if [ "$verify" = 1 ]; then
    say "  signature of SHA256SUMS verified"
  fi
  expected=$(awk -v name="$archive" '$2 == name || $2 == ("*" name) { print $1; exit }' "$tmp/SHA256SUMS")
  [ -n "$expected" ] || die "lmx $version has no build for $TARGET"
  fetch "$base/$version/$archive" "$tmp/$archive" || die "download of $base/$version/$archive failed"
  actual=$(sha256_of "$tmp/$archive")
  [ "$actual" = "$expected" ] || die "checksum mismatch for $archive: got $actual, SHA256SUMS says $expected; nothing was installed"
  say "  checksum verified"

  mkdir "$tmp/unpack" || die "cannot create $tmp/unpack"
  tar -xzf "$tmp/$archive" -C "$tmp/unpack" lmx || die "cannot unpack $archive"
  chmod 755 "$tmp/unpack/lmx"
  reported=$("$tmp/unpack/lmx" --version 2>&1) || die "the downloaded lmx does not run on this machine: $reported"
  [ "$reported" = "lmx $version" ] || die "the downloaded lmx reports \"$reported\", expected \"lmx $version\""

  bindir="$prefix/bin"
  dest="$bindir/lmx"
  mkdir -p "$bindir" || die "cannot create $bindir"
  # Copied beside the destination first, so the last step is a rename within one file system:
  # `lmx` is never half-written, and a running lmx keeps the file it started from.
  cp "$tmp/unpack/lmx" "$bindir/.lmx-install-$$" || die "cannot write to $bindir"
  chmod 755 "$bindir/.lmx-install-$$" || die "cannot make $bindir/.lmx-install-$$ executable"
  previous=""
  if [ -f "$dest" ]; then
    previous=$("$dest" --version 2>/dev/null || true)
    if [ "$previous" != "lmx $version" ]; then
      ln -f "$dest" "$bindir/lmx.old" 2>/dev/null || cp -p "$dest" "$bindir/lmx.old" || warn "could not keep the previous version as lmx.old"
    fi
  fi
  mv -f "$bindir/.lmx-install-$$" "$dest" || die "cannot move lmx into $bindir"
  if [ -n "$previous" ] && [ "$previous" != "lmx $version" ]; then
    say "Upgraded $previous to lmx $version at $dest (the previous one is kept as lmx.old)"
  else
    say "Installed lmx $version at $dest"
  fi

  on_path=0
  case ":${PATH:-}:" in
    *":$bindir:"*) on_path=1 ;;
  esac
  if [ "$change_path" = 1 ] && [ "$on_path" = 0 ]; then
    modify_path
  fi

  if [ "$service" = 1 ]; then
    "$dest" service install || die "lmx is installed, but installing the background service failed (see above)"
  fi

  say ""
  say "Next:"
  if [ "$on_path" = 0 ]; then
    if [ "$change_path" = 1 ]; then
      say "  export PATH=\"$bindir:\$PATH\"   # this shell only; new terminals have it already"
    else
      say "  export PATH=\"$bindir:\$PATH\"   # add this to your shell profile to keep it"
    fi
  fi
  if [ "$service" = 1 ]; then
    say "  lmx service status                  # the server runs in the background on http://127.0.0.1:1234"
    say "  lmx service logs -f"
  else
    say "  lmx serve --model /path/to/model.gguf   # OpenAI-compatible API on http://127.0.0.1:1234"
    say "  lmx service install                    # or run it in the background, started at login"
  fi
  say "  lmx update                             # later: update to the newest release"
}

{ main "$@"; }
