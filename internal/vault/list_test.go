package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// TestListAnswerBounded: a LIST answer past maxListAnswer (here a server
// streaming 8 MiB of serials, which no real Vault does on cue) fails
// the call as Vault unavailable instead of growing the portal's memory
// until the timeout; an answer within the bound is decoded whole.
func TestListAnswerBounded(t *testing.T) {
	defer func(n int64) { maxListAnswer = n }(maxListAnswer)
	maxListAnswer = 1 << 20
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"data":{"keys":["00"`)
		// 8 MiB, then the connection ends: far past the bound, and a
		// decoder without one reads it all and fails only on the cut.
		for i := 0; i < 8<<20/11; i++ {
			if _, err := fmt.Fprintf(w, `,"%08x"`, i); err != nil {
				return
			}
		}
	}))
	defer endless.Close()
	small := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("list") != "true" {
			http.Error(w, "not a LIST", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"request_id":"x","data":{"keys":["0a:01","0b:02"]},"warnings":null}`)
	}))
	defer small.Close()
	client := func(addr string) *vaultapi.Client {
		cfg := vaultapi.DefaultConfig()
		cfg.Address = addr
		cfg.MaxRetries = 0
		c, err := vaultapi.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	if _, err := listKeys(ctx, client(endless.URL), "pki/certs"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("endless answer: %v; want an error wrapping ErrUnavailable", err)
	}
	keys, err := listKeys(ctx, client(small.URL), "pki/certs")
	if err != nil || len(keys) != 2 || keys[0] != "0a:01" || keys[1] != "0b:02" {
		t.Errorf("small answer: %v, %v; want [0a:01 0b:02]", keys, err)
	}
}
