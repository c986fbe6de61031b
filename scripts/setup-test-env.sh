#!/usr/bin/env bash
# Install everything the test suite uses: Debian packages (Groovy and a JRE for Jenkinsfile parsing,
# podman, runc, docker-registry and debootstrap for real image builds, git) and homec itself with its
# ml and test extras. Safe to run again; apt-get runs only when a command is missing. Needs root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A COMMAND_OF_PACKAGE=([groovy]=groovy [default-jre-headless]=java [git]=git)
missing=()
for package in "${!COMMAND_OF_PACKAGE[@]}"; do
  command -v "${COMMAND_OF_PACKAGE[$package]}" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-test-env: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_options=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
  apt-get "${apt_options[@]}" update -q
  apt-get "${apt_options[@]}" install -y -q "${missing[@]}"
fi
bash .ci/setup-containers.sh

python3 -m pip install --quiet --disable-pip-version-check -e '.[ml,test]'
