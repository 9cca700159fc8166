//go:build js && wasm

// Command devicekey is the WebAssembly module the portal's page loads for
// "create the key on this device" (built by `make build` into web/wasm).
// It registers one global object, certportalDeviceKey, with:
//
//	csr(commonName) -> {csr} | {error}   makes a new key, returns its CSR
//	p12(certPEM, chainPEM, password, encryption) -> Uint8Array | {error}
//	forget()                             drops the key
//
// The key lives in this module's memory only; p12 forgets it once used.
package main

import (
	"syscall/js"

	"github.com/certportal/certportal/internal/devicekey"
)

func main() {
	var key *devicekey.Key
	fail := func(code string) any { return map[string]any{"error": code} }
	api := map[string]any{
		"csr": js.FuncOf(func(_ js.Value, args []js.Value) any {
			cn := ""
			if len(args) > 0 && args[0].Type() == js.TypeString {
				cn = args[0].String()
			}
			k, err := devicekey.New()
			if err != nil {
				return fail("key")
			}
			csr, err := k.CSR(cn)
			if err != nil {
				return fail("key")
			}
			key = k
			return map[string]any{"csr": csr}
		}),
		"p12": js.FuncOf(func(_ js.Value, args []js.Value) any {
			if key == nil || len(args) != 4 {
				return fail("key")
			}
			data, err := key.P12(args[0].String(), args[1].String(), args[2].String(), args[3].String())
			switch {
			case err == devicekey.ErrPassword:
				return fail("password")
			case err != nil:
				return fail("p12")
			}
			key = nil
			out := js.Global().Get("Uint8Array").New(len(data))
			js.CopyBytesToJS(out, data)
			clear(data)
			return out
		}),
		"forget": js.FuncOf(func(js.Value, []js.Value) any { key = nil; return nil }),
	}
	js.Global().Set("certportalDeviceKey", js.ValueOf(api))
	select {} // serve calls until the page goes away
}
