#!/usr/bin/env bash
# Install the host tools that the container integration tests need.
# podman is the engine and serves the Docker API. runc is its runtime, because
# crun fails with podman 4.3 on the Debian 12 test machines. docker-registry is
# the local registry that tests push to. debootstrap builds the Debian base
# image, because the test machines cannot pull public images.
#
# Safe to run again: apt-get runs only when a command is missing. Needs root
# on Debian 12 (bookworm).
set -euo pipefail

# Each Debian package with the command it installs.
declare -A COMMAND_OF_PACKAGE=(
  [podman]=podman
  [runc]=runc
  [docker-registry]=docker-registry
  [debootstrap]=debootstrap
)

missing=()
for package in "${!COMMAND_OF_PACKAGE[@]}"; do
  if ! command -v "${COMMAND_OF_PACKAGE[$package]}" >/dev/null 2>&1; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup-containers: podman, runc, docker-registry and debootstrap are already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-containers: missing packages ${missing[*]}; run this script as root to install them" >&2
  exit 1
fi

echo "setup-containers: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait up to 10 minutes for another apt or dpkg run to release its lock.
apt_options=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
apt-get "${apt_options[@]}" update -q
apt-get "${apt_options[@]}" install -y -q "${missing[@]}"

for package in "${missing[@]}"; do
  if ! command -v "${COMMAND_OF_PACKAGE[$package]}" >/dev/null 2>&1; then
    echo "setup-containers: package $package installed, but command ${COMMAND_OF_PACKAGE[$package]} is still not on PATH" >&2
    exit 1
  fi
done
echo "setup-containers: installed ${missing[*]}"
