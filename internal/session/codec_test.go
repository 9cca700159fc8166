package session

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
)

func TestCodecRoundTrip(t *testing.T) {
	sc := securecookie.New(make([]byte, 64), make([]byte, 32))
	sc.SetSerializer(codec{})
	exp := time.Date(2026, 11, 25, 16, 0, 0, 123456789, time.UTC)
	in := map[any]any{"user": "alice", "token": "hvs.secret", "roles": []string{"employee", "helpdesk"}, "none": []string{}, "exp": exp}
	enc, err := sc.Encode("session-data", in)
	if err != nil {
		t.Fatal(err)
	}
	var out map[any]any
	if err := sc.Decode("session-data", enc, &out); err != nil {
		t.Fatal(err)
	}
	if got := out["exp"].(time.Time); !got.Equal(exp) {
		t.Errorf("time: %v, want %v", got, exp)
	}
	out["exp"], in["exp"] = nil, nil
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %#v\nwant %#v", out, in)
	}
	var id string
	if enc, err = sc.Encode("c", "session-id"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Decode("c", enc, &id); err != nil || id != "session-id" {
		t.Fatalf("id: %q %v", id, err)
	}
}

// A value the codec does not know is an error on save, not a silent loss.
func TestCodecRefusesUnknownTypes(t *testing.T) {
	for _, in := range []map[any]any{{"n": 42}, {1: "x"}, {"m": map[string]string{}}} {
		if _, err := (codec{}).Serialize(in); err == nil || !strings.Contains(err.Error(), "session:") {
			t.Errorf("%v: %v", in, err)
		}
	}
	var m map[any]any
	if err := (codec{}).Deserialize([]byte(`{"x":{}}`), &m); err == nil {
		t.Error("untyped value accepted")
	}
}
