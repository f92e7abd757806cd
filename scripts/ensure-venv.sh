#!/usr/bin/env bash
# Create .venv at the repo root with the Python tools of the local stack:
#   moto_server (SQS + Secrets Manager stand-in) and boto3 (tools/bootstrap_aws.py);
#   cfn-lint with the serverless rules (`make test` lints template.yaml);
#   with --with-cargo-lambda also cargo-lambda (binary + zig) for `make dev` / `make build`;
#   with --with-schemathesis also schemathesis (`make reliability` fuzzes the management API);
#   with --with-sam also the SAM CLI, in a venv of its own (.venv-sam): it pins boto3 to a
#   version other than the one moto and the bridge use here. Flags combine.
# Pinned versions; a stamp file keyed on the requirement set skips pip when nothing changed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}

reqs=("moto[server]==5.2.5" "boto3==1.44.8" "cfn-lint==1.58.0" "cfn-lint-serverless==0.3.6")
sam=false
for arg in "$@"; do
  case "$arg" in
    --with-cargo-lambda) reqs+=("cargo-lambda==1.9.2") ;;
    --with-schemathesis) reqs+=("schemathesis==4.32.5") ;;
    --with-sam) sam=true ;;
    *) echo "usage: $0 [--with-cargo-lambda] [--with-schemathesis] [--with-sam]" >&2; exit 2 ;;
  esac
done

log() { echo "ensure-venv: $*" >&2; }

# ensure_venv DIR REQUIREMENT...
ensure_venv() {
  local VENV=$1
  shift
  local reqs=("$@")

  # A venv whose interpreter vanished (pyenv upgrade, moved checkout) is rebuilt from scratch.
  if [[ -d $VENV ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "removing broken $VENV"
    rm -rf "$VENV"
  fi

  if [[ ! -x $VENV/bin/python ]]; then
    # Debian's system python3 lacks venv/ensurepip until python3-venv is installed.
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null && command -v apt-get >/dev/null; then
      log "installing python3-venv (apt)"
      sudo_=(); [[ $EUID -eq 0 ]] || sudo_=(sudo)
      "${sudo_[@]}" apt-get update -qq
      "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi

  # The stamp names the exact requirement set and interpreter version.
  key=$({ printf '%s\n' "${reqs[@]}"; "$VENV/bin/python" -VV; } | sha256sum | cut -c1-16)
  stamp="$VENV/.installed-$key"
  if [[ -f $stamp ]]; then
    return 0
  fi

  log "pip install ${reqs[*]} (into $VENV)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  "$VENV/bin/python" -m pip install -q "${reqs[@]}"
  touch "$stamp"
}

ensure_venv "$ROOT/.venv" "${reqs[@]}"
if $sam; then
  ensure_venv "$ROOT/.venv-sam" "aws-sam-cli==1.170.0"
fi
