#!/bin/sh
# greet NAME: prints a greeting
greet() { echo "hello, $1"; }
