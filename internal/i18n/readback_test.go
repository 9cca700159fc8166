package i18n

import (
	"fmt"
	"strings"
	"testing"
)

// TestReadBackSetupSteps: every setup step message, formatted in English
// with arguments of the shapes setup passes (mount paths, names with
// spaces, durations, counts), reads back as the same message in Korean
// with the same arguments, and as itself in English; the most specific
// message wins ("role … removed (…)" is not "role …"); a text no message
// wrote is not read.
func TestReadBackSetupSteps(t *testing.T) {
	n := 0
	for _, key := range Keys() {
		if !strings.HasPrefix(key, "setupstep.") {
			continue
		}
		n++
		en := T(English, key)
		args := setupArgs(en)
		text := fmt.Sprintf(en, args...)
		for _, lang := range []Lang{English, Korean} {
			got, ok := ReadBack(lang, "setupstep.", text, nil)
			if want := T(lang, key, args...); !ok || got != want {
				t.Errorf("%s %q: read back %q (%v), want %q", lang, text, got, ok, want)
			}
		}
		if ko := T(Korean, key, args...); ko == text {
			t.Errorf("%s: the Korean message is the English one", key)
		}
	}
	if n < 25 {
		t.Fatalf("only %d setup step messages", n)
	}
	if got, ok := ReadBack(Korean, "setupstep.", "something setup never said", nil); ok {
		t.Errorf("an unknown text read back as %q", got)
	}
	// A text of another prefix's message is not read as a setup step.
	if got, ok := ReadBack(Korean, "setupstep.", T(English, "detailtext.on"), nil); ok {
		t.Errorf("a detail text read back as a setup step: %q", got)
	}
}

// setupArgs are arguments for en's verbs in order: a count for %d, a path
// with a space for %s.
func setupArgs(en string) []any {
	var args []any
	for i := 0; i < len(en)-1; i++ {
		if en[i] != '%' {
			continue
		}
		switch en[i+1] {
		case 'd':
			args = append(args, 10+len(args))
		case 's':
			args = append(args, fmt.Sprintf("mount %d/roles/x", len(args)))
		}
		i++
	}
	return args
}
