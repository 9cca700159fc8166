// Package audit defines certportal's audit events and their hash chain: every
// event carries the hash of the one before it, so that changing, inserting or
// deleting any row breaks the chain at a row Verify names.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Actions recorded.
const (
	ActionLogin         = "login"
	ActionLogout        = "logout"
	ActionIssue         = "certificate.issue"
	ActionDownload      = "certificate.download"
	ActionRevoke        = "certificate.revoke"
	ActionReissue       = "certificate.reissue"
	ActionIssueOnBehalf = "certificate.issue_on_behalf"
	ActionAccessDenied  = "access.denied"
	ActionPortalStart   = "portal.start"
	ActionConfigSetup   = "config.setup" // `certportal setup` changed (or checked) Vault's configuration
	ActionAuditExport   = "audit.export"
	ActionReconcile     = "audit.reconcile"
	ActionSessionEnded  = "session.ended"     // a session ended other than by logout, with the reason and what became of its token
	ActionSessionRoles  = "session.roles"     // a recheck found the token's live policies give other portal roles
	ActionNotify        = "notification.send" // an expiry reminder sent, given up or lost to a crash
	// Login MFA: the password was right and Vault asks for a code; a code
	// was refused. A completed login is ActionLogin with outcome success
	// (details mfa=totp), as without MFA.
	ActionLoginMFARequired = "login.mfa_required"
	ActionLoginMFAFailure  = "login.mfa_failure"
	// Enrolment: helpdesk made a one-time link (ticket), destroyed a
	// user's secret (reset, ticket), and the user spent a link (Vault
	// generated their secret).
	ActionMFAEnrolLink = "mfa.enrolment_link"
	ActionMFAReset     = "mfa.reset"
	ActionMFAEnrol     = "mfa.enrol"
	// Step-up: a logged-in user proved themselves to Vault again (password,
	// and the code when Vault asks for one) before a download, a revocation
	// or a helpdesk action; details say for what (for) and how (mfa).
	ActionStepUp = "session.step_up"
	// The offboarding sweep: a sweep that revoked something, one that held
	// back (why, with its numbers), an operator's confirmation of one, and
	// the first unheld sweep after a hold (the hold ended by itself).
	ActionOffboardSweep   = "offboard.sweep"
	ActionOffboardHeld    = "offboard.held"
	ActionOffboardConfirm = "offboard.confirm"
	ActionOffboardResumed = "offboard.resumed"
	// The portal replaced its own AppRole secret id (or could not, and
	// says why): accessors and expiry only, never the secret id.
	ActionSecretIDRotate = "approle.secret_id_rotate"
	// The background reconciliation held back its automatic revocations:
	// more certificates issued around the portal than its limit.
	ActionReconcileHeld = "reconcile.held"
	// A background reconciliation ran unheld after a hold: the hold is
	// over (revoked by hand, or the limit raised).
	ActionReconcileResumed = "reconcile.resumed"
)

// Chart series: the actions each daily count adds up. On-behalf issuance is
// issuance, and a helpdesk reissue is a revocation (as superseded).
var (
	ChartIssued  = []string{ActionIssue, ActionIssueOnBehalf}
	ChartRevoked = []string{ActionRevoke, ActionReissue}
)

// Outcomes recorded.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
	// OutcomeIntent is written before an action Vault performs (a
	// revocation), so that the trail holds it even if recording the
	// result fails afterwards.
	OutcomeIntent = "intent"
	// OutcomeNotDelivered: a .p12 whose certificate was issued and recorded
	// did not reach the client (it hung up first, or the connection broke
	// before the client took the last byte). The issuance record stays.
	OutcomeNotDelivered = "not_delivered"
)

// Event is one audit record. Details is a flat, non-secret key/value map;
// callers never put passwords, tokens, keys or .p12 passwords in it.
type Event struct {
	ID        int64
	Time      time.Time // UTC, microsecond precision
	Actor     string    // who acted ("" when unknown, e.g. a failed login's claimed name goes in Subject)
	Subject   string    // whose identity or certificate it concerns
	Action    string
	Outcome   string
	ClientIP  string
	UserAgent string
	RequestID string
	Serial    string
	Details   string // JSON object, canonical (sorted keys)
	PrevHash  string // hex
	Hash      string // hex
}

// GenesisHash is the PrevHash of the first event.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ComputeHash returns the chain hash of e given its PrevHash. Every field is
// length-prefixed, so no two different events encode the same way.
func ComputeHash(e *Event) string {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put("certportal-audit-v1")
	binary.BigEndian.PutUint64(n[:], uint64(e.ID))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.Time.UTC().UnixMicro()))
	h.Write(n[:])
	for _, f := range []string{e.Actor, e.Subject, e.Action, e.Outcome, e.ClientIP, e.UserAgent, e.RequestID, e.Serial, e.Details, e.PrevHash} {
		put(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Seal fills in e's chain fields after prev (nil for the first event).
func Seal(e *Event, prev *Event) {
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if prev == nil {
		e.PrevHash = GenesisHash
	} else {
		e.PrevHash = prev.Hash
	}
	e.Hash = ComputeHash(e)
}

// ErrBroken is wrapped by every chain failure Verify reports.
var ErrBroken = errors.New("audit chain broken")

// Verifier checks events in ascending id order, one at a time, so that a
// chain of any length verifies in constant memory.
type Verifier struct {
	prev  *Event
	Count int64
}

// Check verifies the next event.
func (v *Verifier) Check(e *Event) error {
	wantPrev := GenesisHash
	wantID := int64(1)
	if v.prev != nil {
		wantPrev, wantID = v.prev.Hash, v.prev.ID+1
	}
	switch {
	case e.ID != wantID:
		return fmt.Errorf("%w at row %d: expected row %d (a row was deleted or inserted)", ErrBroken, e.ID, wantID)
	case e.PrevHash != wantPrev:
		return fmt.Errorf("%w at row %d: prev_hash does not match row %d's hash", ErrBroken, e.ID, wantID-1)
	case ComputeHash(e) != e.Hash:
		return fmt.Errorf("%w at row %d: contents do not match its hash (the row was altered)", ErrBroken, e.ID)
	}
	cp := *e
	v.prev = &cp
	v.Count++
	return nil
}

// Head is the last verified event's hash (GenesisHash for an empty chain).
func (v *Verifier) Head() string {
	if v.prev == nil {
		return GenesisHash
	}
	return v.prev.Hash
}
