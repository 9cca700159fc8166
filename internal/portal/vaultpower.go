package portal

import (
	"context"
	"errors"
	"fmt"

	"github.com/certportal/certportal/internal/vault"
)

// GroupReader reads the policies of an identity group (vault.Service
// does, with the read on identity/group/id/+ that setup grants the
// portal's identity).
type GroupReader interface {
	ReadGroupPolicies(ctx context.Context, id string) ([]string, error)
}

// maxIdentityGroups bounds the groups read for one user: a user in more is
// judged unreadable (fail closed) rather than costing a hundred reads.
const maxIdentityGroups = 50

// identityGrant is what Vault grants every token of a userpass user beyond
// the user's own token_policies: the policies of its identity entity and
// of every group the entity is in, directly or through a parent group.
type identityGrant struct {
	Disabled bool
	Policies []string
}

// errIdentityUnreadable: Vault would not let the portal read the user's
// identity groups (a service policy from before this check).
var errIdentityUnreadable = errors.New("the portal's identity cannot read the user's identity groups (rerun certportal setup)")

// userIdentity reads username's identity grant with the portal's identity;
// nil for a user without an entity (never logged in: nothing granted).
// Any failure is an error: callers deciding what a user may be given fail
// closed.
func (s *Service) userIdentity(ctx context.Context, username string) (*identityGrant, error) {
	if s.offboardVault == nil {
		return nil, errors.New("the portal's identity cannot read userpass users")
	}
	accessor, err := s.offboardVault.MountAccessor(ctx, s.opts.UserpassMount)
	if err != nil {
		return nil, err
	}
	if accessor == "" {
		return nil, fmt.Errorf("userpass mount %s has no accessor", s.opts.UserpassMount)
	}
	e, err := s.offboardVault.LookupEntityByAlias(ctx, accessor, username)
	if err != nil || e == nil {
		return nil, err
	}
	pols, err := s.groupPolicies(ctx, e.GroupIDs)
	if err != nil {
		return nil, err
	}
	return &identityGrant{Disabled: e.Disabled, Policies: append(append([]string(nil), e.Policies...), pols...)}, nil
}

// groupPolicies reads the policies of the identity groups ids, with the
// portal's identity. Not being allowed to read them (a service policy from
// before setup granted it) is errIdentityUnreadable.
func (s *Service) groupPolicies(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	gr, ok := s.offboardVault.(GroupReader)
	if !ok || len(ids) > maxIdentityGroups {
		return nil, errIdentityUnreadable
	}
	var all []string
	for _, id := range ids {
		pols, err := gr.ReadGroupPolicies(ctx, id)
		if errors.Is(err, vault.ErrPermissionDenied) {
			return nil, fmt.Errorf("%w: %w", errIdentityUnreadable, err)
		}
		if err != nil {
			return nil, err
		}
		all = append(all, pols...)
	}
	return all, nil
}

// classifyPolicies sorts policies by what they grant beyond an employee's:
// beyond is the first that is not the portal's nor Vault's default (Vault
// power), staff the first portal staff policy (helpdesk, auditor); both ""
// when they are only default and the portal's user policy.
func (s *Service) classifyPolicies(policies []string) (beyond, staff string) {
	for _, p := range policies {
		switch p {
		case "default", s.opts.UserPolicy:
		case s.opts.HelpdeskPolicy, s.opts.AuditorPolicy:
			if staff == "" {
				staff = p
			}
		default:
			if beyond == "" {
				beyond = p
			}
		}
	}
	return beyond, staff
}

// ReasonExtraPolicies is the recorded reason for refusing a helpdesk action
// for a user holding Vault policies beyond the portal's.
const ReasonExtraPolicies = "holds Vault policies beyond the portal's"

// policyRefusal classifies policies for a helpdesk action meant for
// employees: ReasonExtraPolicies with the first Vault policy beyond the
// portal's, else ReasonPortalStaff with the staff policy, or "" when they
// are only Vault's default and the portal's user policy.
func (s *Service) policyRefusal(policies []string) (why, policy string) {
	beyond, staff := s.classifyPolicies(policies)
	switch {
	case beyond != "":
		return ReasonExtraPolicies, beyond
	case staff != "":
		return ReasonPortalStaff, staff
	}
	return "", ""
}

// identityError is the answer when the portal could not read what Vault
// grants a user through identity: a clear "rerun setup" when Vault refused
// the read, else Vault unavailable.
func identityError(err error) *Error {
	if errors.Is(err, errIdentityUnreadable) {
		return &Error{Code: EUnavailable, Message: "error.identity_unreadable", Err: err}
	}
	return vaultUnavailable(err)
}
