package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

// Offboarding revocation reasons (RFC 5280 names): the person left or lost
// the right to a certificate, or Vault suspended them.
const (
	ReasonAffiliationChanged   = "affiliationChanged"
	ReasonCessationOfOperation = "cessationOfOperation"
)

// OffboardActor is who the trail names for what the sweep does.
const OffboardActor = "certportal"

// offboardLock is the store lock one sweep at a time holds, across replicas.
const offboardLock = "offboard"

// OffboardVault is what the sweep reads with the portal's own identity;
// *vault.Service implements it.
type OffboardVault interface {
	ListUsers(ctx context.Context, mount string) ([]string, error)
	ReadUser(ctx context.Context, mount, name string) (*vault.UserpassUser, error)
	MountAccessor(ctx context.Context, path string) (string, error)
	LookupEntityByAlias(ctx context.Context, accessor, name string) (*vault.Entity, error)
}

// OffboardMode says what a sweep may do.
type OffboardMode int

const (
	// OffboardGuarded revokes unless the limits say the list is suspicious;
	// then it holds and alerts. serve and `offboard --once` run it.
	OffboardGuarded OffboardMode = iota
	// OffboardDryRun computes the list and changes nothing.
	OffboardDryRun
	// OffboardConfirm revokes the list it computes now, limits or not: an
	// operator looked at a held sweep and said go.
	OffboardConfirm
)

// OffboardOptions are the sweep's limits.
type OffboardOptions struct {
	// MaxShare and MaxCount: a sweep that would revoke the certificates of
	// more than MaxShare of the users holding active ones, or of more than
	// MaxCount users, holds instead. A single user is never a mass
	// revocation, so the share does not stop the one leaver of a small team.
	MaxShare float64 // 0 means 10%
	MaxCount int     // 0 means 50
	// NotifyChannels get a notice of each hold (once per hold) through the
	// reminder outbox: the helpdesk address when one is configured.
	NotifyChannels []string
}

// OffboardUser is one user the sweep would revoke, and why.
type OffboardUser struct {
	Username string
	Reason   string // ReasonAffiliationChanged or ReasonCessationOfOperation
	Evidence string // what Vault showed, e.g. "user not found in userpass mount userpass"
	Serials  []string
}

// OffboardResult is what one sweep saw and did.
type OffboardResult struct {
	Listed      int // users in the userpass mount
	ActiveUsers int // users with active certificates in the inventory
	Users       []OffboardUser
	Revoked     int // certificates revoked
	Failed      int // certificates whose revocation failed (retried next sweep)
	CheckErrors int // users Vault could not be asked about (left alone)
	Held        bool
	HeldWhy     string
	Skipped     bool // another replica was sweeping
}

// ErrOffboardBusy: another replica (or run) holds the sweep's lock.
var ErrOffboardBusy = errors.New("offboard: another sweep is running")

// Offboard runs one sweep. Users Vault no longer has, whose identity entity
// is disabled, or whose userpass policies no longer include the employee
// policy lose their active certificates, revoked through the portal's
// revoke path (intent, Vault, record) with actor "certportal" and the
// evidence in the events. The user list is read once, as a check that the
// mount answers and is not empty; the inventory is walked in SQL, and each
// user with active certificates is read from Vault (judge). confirmedBy
// names the operator for OffboardConfirm.
func (s *Service) Offboard(ctx context.Context, mode OffboardMode, confirmedBy string) (*OffboardResult, error) {
	if s.offboardVault == nil {
		return nil, errors.New("offboard: the service identity cannot read users")
	}
	unlock, ok, err := s.store.TryLock(ctx, offboardLock)
	if err != nil {
		return nil, fmt.Errorf("offboard: %w", err)
	}
	if !ok {
		s.opts.Metrics.OffboardSweep("skipped", s.now())
		s.offboardHeldFromTrail(ctx)
		return &OffboardResult{Skipped: true}, nil
	}
	defer unlock()

	res := &OffboardResult{}
	now := s.now()
	if res.ActiveUsers, err = s.store.CountActiveUsers(ctx, now); err != nil {
		s.opts.Metrics.OffboardSweep("failed", now)
		return nil, fmt.Errorf("offboard: %w", err)
	}
	mount := s.opts.UserpassMount
	users, err := s.offboardVault.ListUsers(ctx, mount)
	if err != nil {
		// Without the list nothing can be judged; never read a failure as
		// "everyone left".
		res.Held, res.HeldWhy = true, "user list unreadable: "+err.Error()
		if mode == OffboardConfirm {
			return res, fmt.Errorf("offboard: cannot confirm: %w", err)
		}
		return res, s.offboardHold(ctx, mode, res)
	}
	res.Listed = len(users)
	if res.ActiveUsers == 0 {
		return res, s.offboardDone(ctx, mode, res, confirmedBy)
	}
	// The list says only that the mount answers and is not empty (a hold
	// below); each user is judged by reading them (judge).
	accessor, accErr := s.offboardVault.MountAccessor(ctx, mount)
	if accErr != nil && len(users) > 0 {
		s.log.WarnContext(ctx, "offboard: cannot read the userpass mount's accessor; disabled entities are not checked this sweep", "err", accErr)
	}
	for after := ""; ; {
		page, err := s.store.ActiveUsers(ctx, now, after, 500)
		if err != nil {
			s.opts.Metrics.OffboardSweep("failed", now)
			return nil, fmt.Errorf("offboard: %w", err)
		}
		verdicts := s.judgePage(ctx, mount, accessor, page)
		for i, v := range verdicts {
			if v.err != nil {
				res.CheckErrors++
				s.log.WarnContext(ctx, "offboard: cannot check a user; left alone this sweep", "user", page[i], "err", v.err)
				continue
			}
			if v.user != nil {
				res.Users = append(res.Users, *v.user)
			}
		}
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1]
	}
	if len(users) == 0 {
		res.Held, res.HeldWhy = true, fmt.Sprintf("user list of mount %s is empty while %d users hold active certificates", mount, res.ActiveUsers)
	} else if why := s.tooMany(len(res.Users), res.ActiveUsers); why != "" {
		res.Held, res.HeldWhy = true, why
	}
	if res.Held && mode != OffboardConfirm {
		if err := s.offboardSerials(ctx, now, res); err != nil {
			return nil, err
		}
		return res, s.offboardHold(ctx, mode, res)
	}
	return res, s.offboardDone(ctx, mode, res, confirmedBy)
}

// offboardParallel bounds the Vault reads a sweep has in flight: each user
// with active certificates costs two (the user, the entity), and against a
// Vault across the network they are latency, not work. Well under the
// client's CERTPORTAL_VAULT_MAX_INFLIGHT, so users' requests keep room.
const offboardParallel = 8

type verdict struct {
	user *OffboardUser
	err  error
}

// judgePage judges page's users, offboardParallel at a time; verdicts are
// in page order, so a sweep's list does not depend on timing.
func (s *Service) judgePage(ctx context.Context, mount, accessor string, page []string) []verdict {
	out := make([]verdict, len(page))
	sem := make(chan struct{}, offboardParallel)
	var wg sync.WaitGroup
	for i, name := range page {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i].user, out[i].err = s.judge(ctx, mount, accessor, name)
		}()
	}
	wg.Wait()
	return out
}

// judge decides about one user with active certificates: nil when Vault
// still admits them. Absence from the list is not enough: the list is
// read before the inventory, so a user created after it who issued a
// certificate before the inventory was read is not in it. Only Vault's
// answer for the user now says they are gone.
func (s *Service) judge(ctx context.Context, mount, accessor, name string) (*OffboardUser, error) {
	u, err := s.offboardVault.ReadUser(ctx, mount, name)
	if err != nil {
		return nil, err
	}
	if u == nil { // not in the mount now (absent from the list too, or deleted since)
		return &OffboardUser{Username: name, Reason: ReasonAffiliationChanged, Evidence: "user not found in userpass mount " + mount}, nil
	}
	var e *vault.Entity
	if accessor != "" {
		if e, err = s.offboardVault.LookupEntityByAlias(ctx, accessor, name); err != nil {
			return nil, err
		}
		if e != nil && e.Disabled {
			return &OffboardUser{Username: name, Reason: ReasonCessationOfOperation,
				Evidence: fmt.Sprintf("identity entity %s (%s) disabled", e.Name, e.ID)}, nil
		}
	}
	// Still someone the portal would let in: a portal role from any grant,
	// as at login (roles: the user, helpdesk or auditor policy, from the
	// token's own policies or the identity's). Helpdesk and auditors hold
	// their own certificates; an employee may get the user policy from an
	// identity group.
	if len(s.roles(u.Policies)) > 0 {
		return nil, nil
	}
	var identity []string
	if e != nil {
		groups, err := s.groupPolicies(ctx, e.GroupIDs)
		if err != nil {
			return nil, err // not judged: left alone, counted as not checked
		}
		identity = append(append(identity, e.Policies...), groups...)
		if len(s.roles(identity)) > 0 {
			return nil, nil
		}
	}
	evidence := fmt.Sprintf("token_policies: [%s], without %s", strings.Join(u.Policies, " "), s.opts.UserPolicy)
	if e != nil {
		evidence += fmt.Sprintf("; identity policies: [%s], without a portal policy", strings.Join(identity, " "))
	}
	return &OffboardUser{Username: name, Reason: ReasonAffiliationChanged, Evidence: evidence}, nil
}

// tooMany says why n revocations out of active users would be a mass
// revocation, or "" when they are not.
func (s *Service) tooMany(n, active int) string {
	share, count := s.opts.Offboard.MaxShare, s.opts.Offboard.MaxCount
	if share <= 0 {
		share = 0.10
	}
	if count <= 0 {
		count = 50
	}
	switch {
	case n > count:
		return fmt.Sprintf("%d of %d users with active certificates would be offboarded, more than the limit of %d", n, active, count)
	case n > 1 && float64(n) > share*float64(active):
		return fmt.Sprintf("%d of %d users with active certificates would be offboarded, more than %g%%", n, active, share*100)
	}
	return ""
}

// offboardSerials fills in each user's active certificates.
func (s *Service) offboardSerials(ctx context.Context, now time.Time, res *OffboardResult) error {
	for i := range res.Users {
		certs, err := s.store.ListCertificates(ctx, store.CertificateFilter{Username: res.Users[i].Username, ActiveAt: now})
		if err != nil {
			return fmt.Errorf("offboard: %w", err)
		}
		res.Users[i].Serials = res.Users[i].Serials[:0]
		for _, c := range certs {
			res.Users[i].Serials = append(res.Users[i].Serials, c.Serial)
		}
	}
	return nil
}

// offboardHold records a held sweep — once per distinct reason and list,
// with a notice to the helpdesk in the same transaction — raises the
// metric and logs an error, and revokes nothing. "Once" is judged from the
// trail, not from memory, so replicas, restarts and cron runs of
// `offboard --once` do not repeat it every sweep.
func (s *Service) offboardHold(ctx context.Context, mode OffboardMode, res *OffboardResult) error {
	if mode == OffboardDryRun {
		return nil
	}
	s.opts.Metrics.OffboardSweep("held", s.now())
	names := make([]string, 0, len(res.Users))
	for _, u := range res.Users {
		names = append(names, u.Username)
	}
	s.log.ErrorContext(ctx, "offboarding sweep held: nothing revoked until an operator runs `certportal offboard --once --confirm` (preview with --dry-run)",
		"why", res.HeldWhy, "listed", res.Listed, "active_users", res.ActiveUsers, "would_revoke_users", len(res.Users))
	details := map[string]string{
		"why": res.HeldWhy, "listed_users": itoa(res.Listed), "active_users": itoa(res.ActiveUsers),
		"would_revoke_users": itoa(len(res.Users)), "users": sample(names, 20),
		"max_share": fmt.Sprintf("%g%%", s.shareLimit()*100), "max_count": itoa(s.countLimit()),
	}
	last, err := s.currentHold(ctx)
	if err != nil {
		return err
	}
	if last != nil {
		d := decodeDetails(last.Details)
		if recordedAs(d, details, "why", "users") {
			return nil // the same hold, already recorded and told
		}
	}
	e := s.newEvent(ctx, OffboardActor, "", audit.ActionOffboardHeld, audit.OutcomeDenied, "", details)
	if ch := s.opts.Offboard.NotifyChannels; len(ch) > 0 {
		if err := s.store.RecordNotice(context.WithoutCancel(ctx), e, store.ThresholdOffboardHeld, ch, s.now()); err != nil {
			s.opts.Metrics.AuditFailure()
			return &Error{Code: EUnavailable, Message: "error.audit_unavailable", Err: err}
		}
		return nil
	}
	return s.record(ctx, e)
}

// offboardHeldFromTrail sets certportal_offboard_held from the trail, the
// state every replica and cron run shares, when this replica's own sweep
// did not decide it (it lost the lock, or failed): each replica's gauge
// then says whether a hold is in force, not what it last saw itself.
func (s *Service) offboardHeldFromTrail(ctx context.Context) {
	if s.opts.Metrics == nil {
		return
	}
	held, err := s.currentHold(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "offboard: cannot read the trail; certportal_offboard_held unchanged", "err", err)
		return
	}
	s.opts.Metrics.OffboardHeld(held != nil)
}

// currentHold is the last offboard.held event when no confirmation or
// resumption came after it: the hold still in force; nil when there is none.
func (s *Service) currentHold(ctx context.Context) (*audit.Event, error) {
	last := func(action, outcome string) (*audit.Event, error) {
		evs, err := s.store.QueryAudit(ctx, store.AuditFilter{Action: action, Outcome: outcome, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("offboard: read the trail: %w", err)
		}
		if len(evs) == 0 {
			return nil, nil
		}
		return evs[0], nil
	}
	held, err := last(audit.ActionOffboardHeld, audit.OutcomeDenied)
	if err != nil || held == nil {
		return nil, err
	}
	for _, a := range []string{audit.ActionOffboardConfirm, audit.ActionOffboardResumed} {
		e, err := last(a, audit.OutcomeSuccess)
		if err != nil {
			return nil, err
		}
		if e != nil && e.ID > held.ID {
			return nil, nil
		}
	}
	return held, nil
}

func (s *Service) shareLimit() float64 {
	if s.opts.Offboard.MaxShare <= 0 {
		return 0.10
	}
	return s.opts.Offboard.MaxShare
}

func (s *Service) countLimit() int {
	if s.opts.Offboard.MaxCount <= 0 {
		return 50
	}
	return s.opts.Offboard.MaxCount
}

// offboardDone revokes the computed list (not in a dry run) and records the
// sweep when it did anything.
func (s *Service) offboardDone(ctx context.Context, mode OffboardMode, res *OffboardResult, confirmedBy string) error {
	now := s.now()
	if err := s.offboardSerials(ctx, now, res); err != nil {
		return err
	}
	if mode == OffboardDryRun {
		return nil
	}
	if mode == OffboardGuarded {
		// A hold that ended by itself (Vault's list came back, the leavers
		// were fewer): say so, so the next hold is a new one and told again.
		held, err := s.currentHold(ctx)
		if err != nil {
			return err
		}
		if held != nil {
			if err := s.record(ctx, s.newEvent(ctx, OffboardActor, "", audit.ActionOffboardResumed, audit.OutcomeSuccess, "", map[string]string{
				"held_event": strconv.FormatInt(held.ID, 10), "listed_users": itoa(res.Listed), "active_users": itoa(res.ActiveUsers),
				"offboard_users": itoa(len(res.Users)),
			})); err != nil {
				return err
			}
		}
	}
	if mode == OffboardConfirm {
		// Who confirmed, and what they confirmed, before anything is revoked.
		if err := s.record(ctx, s.newEvent(ctx, confirmedBy, "", audit.ActionOffboardConfirm, audit.OutcomeSuccess, "", map[string]string{
			"held_why": res.HeldWhy, "listed_users": itoa(res.Listed), "active_users": itoa(res.ActiveUsers),
			"revoke_users": itoa(len(res.Users)), "users": sample(userNames(res.Users), 20),
		})); err != nil {
			return err
		}
	}
	var firstErr error
	for _, u := range res.Users {
		for _, serial := range u.Serials {
			c, err := s.store.GetCertificate(ctx, serial)
			if err != nil || c.Revoked() {
				continue // gone or revoked meanwhile
			}
			extra := map[string]string{"evidence": u.Evidence, "offboard": "sweep"}
			if mode == OffboardConfirm {
				extra["offboard"], extra["confirmed_by"] = "confirmed", confirmedBy
			}
			if err := s.revokeWith(ctx, OffboardActor, audit.ActionRevoke, c, store.Revocation{At: s.now(), Reason: u.Reason, By: OffboardActor}, extra); err != nil {
				res.Failed++
				firstErr = cmpErr(firstErr, err)
				s.log.ErrorContext(ctx, "offboard: revocation failed; the next sweep tries again", "serial", serial, "user", u.Username, "err", err)
				continue
			}
			res.Revoked++
		}
	}
	if res.Failed > 0 {
		s.opts.Metrics.OffboardSweep("failed", s.now())
		s.offboardHeldFromTrail(ctx) // a hold this sweep ended (offboard.resumed) is over
	} else {
		s.opts.Metrics.OffboardSweep("ok", s.now())
	}
	if len(res.Users) > 0 || mode == OffboardConfirm {
		if err := s.record(ctx, s.newEvent(ctx, OffboardActor, "", audit.ActionOffboardSweep, outcomeOf(res), "", map[string]string{
			"listed_users": itoa(res.Listed), "active_users": itoa(res.ActiveUsers), "offboarded_users": itoa(len(res.Users)),
			"revoked": itoa(res.Revoked), "failed": itoa(res.Failed), "check_errors": itoa(res.CheckErrors),
			"users": sample(userNames(res.Users), 20), "confirmed_by": confirmedBy,
		})); err != nil {
			return err
		}
	}
	if firstErr != nil {
		return fmt.Errorf("offboard: %d revocations failed: %w", res.Failed, firstErr)
	}
	return nil
}

func outcomeOf(res *OffboardResult) string {
	if res.Failed > 0 {
		return audit.OutcomeFailure
	}
	return audit.OutcomeSuccess
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func userNames(us []OffboardUser) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Username
	}
	return out
}

// sample lists at most n names, saying how many more there were: the
// trail keeps the numbers, not a list that grows with a mass removal.
func sample(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, " ")
	}
	return strings.Join(names[:n], " ") + fmt.Sprintf(" (and %d more)", len(names)-n)
}

// RunOffboard sweeps every interval until ctx ends; the first sweep comes
// one interval after start, so replicas restarting together do not all try
// at once. interval <= 0 does nothing.
func (s *Service) RunOffboard(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.Offboard(ctx, OffboardGuarded, "")
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.ErrorContext(ctx, "offboarding sweep failed", "err", err)
		case res != nil && res.Revoked > 0:
			s.log.InfoContext(ctx, "offboarding sweep revoked certificates", "users", len(res.Users), "revoked", res.Revoked)
		}
	}
}

// OffboardRevocation is an offboarding revocation as the helpdesk sees it.
type OffboardRevocation struct {
	EventID  int64
	Time     time.Time
	Serial   string
	Reason   string
	Evidence string
}

// OffboardRevocations lists the sweep's revocations of username's
// certificates, newest first, with the evidence they were made on.
func (s *Service) OffboardRevocations(ctx context.Context, actor *Identity, username string) ([]OffboardRevocation, error) {
	if !actor.Has(RoleHelpdesk) {
		return nil, &Error{Code: EForbidden, Message: "error.forbidden"}
	}
	if !usernamePattern.MatchString(username) {
		return nil, nil
	}
	evs, err := s.store.QueryAudit(ctx, store.AuditFilter{Actor: OffboardActor, Subject: username, Action: audit.ActionRevoke, Outcome: audit.OutcomeSuccess, Limit: 50})
	if err != nil {
		return nil, storeUnavailable(err)
	}
	out := make([]OffboardRevocation, 0, len(evs))
	for _, e := range evs {
		d := decodeDetails(e.Details)
		if d["auto_revoke"] != "" {
			continue // reconciliation's, not the sweep's (same actor)
		}
		out = append(out, OffboardRevocation{EventID: e.ID, Time: e.Time, Serial: e.Serial, Reason: d["reason"], Evidence: d["evidence"]})
	}
	return out, nil
}

func decodeDetails(raw string) map[string]string {
	m := map[string]string{}
	_ = json.Unmarshal([]byte(raw), &m)
	return m
}

// recordedAs reports whether the details an event recorded (decoded) hold
// what details would record under keys: a value is recorded escaped and cut
// (audit.EncodeDetails), so it is compared in that form.
func recordedAs(recorded, details map[string]string, keys ...string) bool {
	for _, k := range keys {
		if recorded[k] != audit.Clean(details[k], audit.MaxField) {
			return false
		}
	}
	return true
}
