package main

import "github.com/hashicorp/vault/version"

var vaultVersionString = version.GetVersion().Version
