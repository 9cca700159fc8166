package vault

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// UserpassUser is what Vault holds about a userpass user that the
// offboarding sweep judges by: the policies its logins get.
type UserpassUser struct {
	Name     string
	Policies []string // token_policies
}

// ReadUser reads a userpass user with the portal's identity; nil (and no
// error) when Vault has no such user.
func (s *Service) ReadUser(ctx context.Context, mount, name string) (*UserpassUser, error) {
	var u *UserpassUser
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		sec, err := cl.Logical().ReadWithContext(ctx, "auth/"+strings.Trim(mount, "/")+"/users/"+name)
		if err != nil || sec == nil {
			return err
		}
		u = &UserpassUser{Name: name, Policies: policyList(sec.Data["token_policies"])}
		return nil
	})
	if err != nil {
		return nil, classify("read user", err, ErrRefused)
	}
	return u, nil
}

// MountAccessor returns the accessor of the auth mount at path (e.g.
// "userpass"): identity aliases name their mount by it. It reads the
// sys/auth listing, which needs no sudo (sys/auth/<path> would).
func (s *Service) MountAccessor(ctx context.Context, path string) (string, error) {
	var acc string
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		sec, err := cl.Logical().ReadWithContext(ctx, "sys/auth")
		if err != nil || sec == nil {
			return err
		}
		m, _ := sec.Data[strings.Trim(path, "/")+"/"].(map[string]any)
		acc, _ = m["accessor"].(string)
		return nil
	})
	if err != nil {
		return "", classify("read auth mounts", err, ErrRefused)
	}
	if acc == "" {
		return "", fmt.Errorf("auth mount %s: no accessor in sys/auth: %w", path, ErrRefused)
	}
	return acc, nil
}

// Entity is a Vault identity entity, as far as the sweep needs it.
type Entity struct {
	ID, Name string
	// Disabled: Vault refuses every token of a disabled entity, whatever
	// its policies — the way an operator suspends a person without
	// deleting their login.
	Disabled bool
	// Metadata are the entity's key/value pairs, set by Vault operators
	// (users cannot write their own entity): e.g. an "email" address for
	// reminders (CERTPORTAL_NOTIFY_EMAIL_METADATA).
	Metadata map[string]string
	// Policies are the entity's own policies (not the login's
	// token_policies); GroupIDs every identity group it belongs to,
	// directly or through a parent group. Both grant power to every token
	// of the entity.
	Policies []string
	GroupIDs []string
}

// LookupEntityByAlias finds the entity behind alias name on the auth mount
// with accessor; nil (and no error) when there is none (a user who never
// logged in has no entity yet).
func (s *Service) LookupEntityByAlias(ctx context.Context, accessor, name string) (*Entity, error) {
	var e *Entity
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		sec, err := cl.Logical().WriteWithContext(ctx, "identity/lookup/entity",
			map[string]any{"alias_name": name, "alias_mount_accessor": accessor})
		if err != nil || sec == nil || sec.Data == nil {
			return err
		}
		e = &Entity{}
		e.ID, _ = sec.Data["id"].(string)
		e.Name, _ = sec.Data["name"].(string)
		e.Disabled, _ = sec.Data["disabled"].(bool)
		e.Policies = policyList(sec.Data["policies"])
		seen := map[string]bool{}
		for _, k := range []string{"direct_group_ids", "group_ids", "inherited_group_ids"} {
			for _, id := range stringList(sec.Data[k]) {
				if !seen[id] {
					seen[id] = true
					e.GroupIDs = append(e.GroupIDs, id)
				}
			}
		}
		if md, ok := sec.Data["metadata"].(map[string]any); ok {
			e.Metadata = make(map[string]string, len(md))
			for k, v := range md {
				if str, ok := v.(string); ok {
					e.Metadata[k] = str
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, classify("look up entity", err, ErrRefused)
	}
	return e, nil
}

// ReadGroupPolicies returns the policies of the identity group id; none
// for a group deleted since it was named.
func (s *Service) ReadGroupPolicies(ctx context.Context, id string) ([]string, error) {
	var pols []string
	err := s.do(ctx, func(cl *vaultapi.Client) error {
		sec, err := cl.Logical().ReadWithContext(ctx, "identity/group/id/"+url.PathEscape(id))
		if err != nil || sec == nil {
			return err
		}
		pols = policyList(sec.Data["policies"])
		return nil
	})
	if err != nil {
		return nil, classify("read group", err, ErrRefused)
	}
	return pols, nil
}

// policyList reads a list of policy names as Vault applies them: Vault
// stores a name as typed ("Certportal-User") but lower-cases it when it
// grants a token, so the portal compares lower-cased, trimmed names.
func policyList(v any) []string {
	out := stringList(v)
	for i, p := range out {
		out[i] = strings.ToLower(strings.TrimSpace(p))
	}
	return out
}

func stringList(v any) []string {
	raw, _ := v.([]any)
	out := make([]string, 0, len(raw))
	for _, x := range raw {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
