#!/bin/sh
# An unmodified "builder": it knows nothing about provenance.
set -eu
mkdir -p out
cat src/greeting.txt > out/hello.txt
printf 'built at %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> out/hello.txt
echo "build.sh: wrote out/hello.txt"
