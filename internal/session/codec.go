package session

import (
	"encoding/json"
	"fmt"
	"time"
)

// codec serialises what the portal keeps in a session — the cookie's id
// string, and session values with string keys holding strings, string lists
// and times — as JSON. securecookie's default, gob, sends its type
// descriptions with every value and compiles a decoder for each: about 3% of
// the portal's CPU per request in the issuance benchmark, for four fields.
// Anything else is refused when the session is saved, never silently dropped.
type codec struct{}

// value is one session value; exactly one field is set.
type value struct {
	S *string    `json:"s,omitempty"`
	L []string   `json:"l,omitempty"`
	T *time.Time `json:"t,omitempty"`
	// Nil-or-empty list: L alone cannot tell "no list" from "empty list".
	E bool `json:"e,omitempty"`
}

func (codec) Serialize(src any) ([]byte, error) {
	switch v := src.(type) {
	case string:
		return json.Marshal(v)
	case map[any]any:
		out := make(map[string]value, len(v))
		for k, x := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("session: key %v is a %T, not a string", k, k)
			}
			switch x := x.(type) {
			case string:
				out[ks] = value{S: &x}
			case []string:
				out[ks] = value{L: x, E: len(x) == 0}
			case time.Time:
				out[ks] = value{T: &x}
			default:
				return nil, fmt.Errorf("session: value for %q is a %T; only string, []string and time.Time are kept", ks, x)
			}
		}
		return json.Marshal(out)
	default:
		return nil, fmt.Errorf("session: cannot serialise a %T", src)
	}
}

func (codec) Deserialize(src []byte, dst any) error {
	switch d := dst.(type) {
	case *string:
		return json.Unmarshal(src, d)
	case *map[any]any:
		var in map[string]value
		if err := json.Unmarshal(src, &in); err != nil {
			return err
		}
		m := make(map[any]any, len(in))
		for k, v := range in {
			switch {
			case v.S != nil:
				m[k] = *v.S
			case v.T != nil:
				m[k] = *v.T
			case v.L != nil || v.E:
				m[k] = append([]string{}, v.L...)
			default:
				return fmt.Errorf("session: value for %q has no type", k)
			}
		}
		*d = m
		return nil
	default:
		return fmt.Errorf("session: cannot deserialise into a %T", dst)
	}
}
