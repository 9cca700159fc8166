package app

import "runtime/debug"

// Garbage collector settings for a portal process. The live heap is a few
// MiB while every issuance allocates about 250 KiB, most of it in the
// PKCS#12 key derivation, so with Go's default (GOGC=100) the collector runs
// dozens of times a second under load and takes 5–8% of the CPU. Collecting
// at five times the live heap, under a soft limit that keeps the process
// inside DESIGN.md's 64 MiB, takes that back (see docs/benchmarks.md).
const (
	gcPercent   = 400
	memoryLimit = 48 << 20
)

// TuneRuntime applies the collector settings above, except where the
// operator has chosen with Go's own GOGC or GOMEMLIMIT. serve calls it once
// at start; the benchmarks call it to measure what serve runs.
func TuneRuntime(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
