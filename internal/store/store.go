// Package store defines what certportal keeps between requests — sessions and
// the certificate inventory — independent of the database that holds it.
// sqlstore holds the one SQL implementation, which sqlite and postgres run
// with their own dialect and schema; both pass the same suite (storetest).
// See docs/store.md.
package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
)

// Errors implementations return.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: already exists")
	// ErrCapReached: ReserveIssuance found every one of the user's places
	// taken by active certificates and live reservations.
	ErrCapReached = errors.New("store: active certificate cap reached")
)

// Session is a server-side session. Data is opaque to the store: the session
// layer encrypts it before it gets here, so a copy of the database holds no
// usable Vault token.
type Session struct {
	IDHash    string // SHA-256 of the cookie's random id; the id itself is never stored
	Data      []byte
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute expiry
	// MovedTo is set on a forwarding row, left at an id the session moved
	// away from (RenameSession): the new id as the session layer encrypted
	// it, never in clear. Data is then empty and ExpiresAt the end of the
	// grace. Nil for a live session.
	MovedTo []byte
}

// Sessions stores sessions.
type Sessions interface {
	SaveSession(ctx context.Context, s *Session) error
	GetSession(ctx context.Context, idHash string) (*Session, error)
	TouchSession(ctx context.Context, idHash string, at time.Time) error
	// UpdateSessionData replaces a stored session's data and last-seen
	// time; ErrNotFound when it is gone. It never re-creates a session: one
	// deleted meanwhile (logout, expiry) stays deleted.
	UpdateSessionData(ctx context.Context, idHash string, data []byte, at time.Time) error
	// RenameSession moves a stored session to a new id hash, with new data
	// and last-seen time, keeping its creation and absolute expiry, and in
	// the same transaction leaves at the old id hash a forwarding row
	// (MovedTo: movedTo, ExpiresAt: until, no data). ErrNotFound when the
	// session is gone or already moved: like UpdateSessionData, it never
	// re-creates one. Save, Touch, Update and Rename never write a
	// forwarding row; GetSession returns it, DeleteSession and the sweep
	// delete it.
	RenameSession(ctx context.Context, oldHash, newHash string, data []byte, at time.Time, movedTo []byte, until time.Time) error
	DeleteSession(ctx context.Context, idHash string) error
	// ExpiredSessions returns up to limit sessions past their absolute
	// expiry (at or before now) or idle since before idleBefore, whose id
	// hash sorts after `after` (bytewise), in id-hash order. The sweep reads
	// them before deleting them because each holds a Vault token to revoke
	// first; the cursor lets it step past sessions it must leave in place.
	ExpiredSessions(ctx context.Context, now, idleBefore time.Time, after string, limit int) ([]*Session, error)
}

// Certificate is one inventory row: a certificate the portal issued.
type Certificate struct {
	Serial     string // Vault's form: lowercase hex pairs joined by ':'
	Username   string // whose identity it carries
	Subject    string // CN, e.g. alice@example.com
	KeyType    string // e.g. "ec-256"
	Encryption string // modern or compat: the .p12's, whoever packed it
	// KeyOrigin is where the private key was made: "vault" (the server
	// path: Vault made it, the portal packed the .p12) or "device" (the
	// user's browser made it and sent a CSR; the portal never saw it).
	KeyOrigin string
	IssuedBy  string // who asked: the user, or helpdesk staff on their behalf
	IssuedAt  time.Time
	NotAfter  time.Time

	RevokedAt    time.Time // zero while not revoked
	RevokeReason string
	RevokedBy    string
	Ticket       string // helpdesk ticket reference for a revocation

	// Label is the user's own name for the certificate ("work laptop"),
	// so that several look different in lists and file names; may be empty.
	Label string
}

// Key origins (Certificate.KeyOrigin).
const (
	KeyOriginVault  = "vault"
	KeyOriginDevice = "device"
)

// Revoked reports whether the certificate has been revoked.
func (c *Certificate) Revoked() bool { return !c.RevokedAt.IsZero() }

// CertificateFilter selects inventory rows; zero fields select everything.
type CertificateFilter struct {
	Username string
	ActiveAt time.Time // when set: only unrevoked certificates valid at this time
	Limit    int       // 0: a sensible default (500)
}

// UserSummary is a user the inventory knows, for helpdesk search.
type UserSummary struct {
	Username string
	Active   int
	Total    int
}

// Revocation records who revoked a certificate, when and why.
type Revocation struct {
	At     time.Time
	Reason string
	By     string
	Ticket string
}

// Inventory states, as the inventory report counts them at a moment: active
// (not revoked, not expired), expiring within 7 or 30 days (active ones),
// expired (not revoked, past not_after) and revoked.
const (
	StateActive     = "active"
	StateExpiring7  = "expiring7"
	StateExpiring30 = "expiring30"
	StateExpired    = "expired"
	StateRevoked    = "revoked"
)

// InventoryStates lists the states in the report's order.
var InventoryStates = []string{StateActive, StateExpiring7, StateExpiring30, StateExpired, StateRevoked}

// InventoryCounts are the inventory report's totals at one moment.
type InventoryCounts struct {
	Active, Expiring7, Expiring30, Expired, Revoked int
}

// InventoryFilter selects certificates behind a count of the report, in
// serial order.
type InventoryFilter struct {
	State       string    // one of InventoryStates; empty: every certificate
	Username    string    // empty: every user
	At          time.Time // the moment states are judged at
	AfterSerial string    // keyset pagination: serials after this one
	Limit       int       // ListInventory's page size; 0: 50
}

// Reservation asks for one of a user's places under the active-certificate
// cap, taken before Vault is asked for the certificate: counting and then
// issuing would let simultaneous requests (on any replica) all pass the
// count. A place is an active certificate or a live reservation.
type Reservation struct {
	Username string
	Max      int       // the cap: places a user has
	At       time.Time // now: activity and liveness are measured at this time
	// Expires is when the reservation stops counting if it is neither
	// consumed by RecordIssuance nor released: what a crash between the two
	// leaves behind. Longer than any Vault call plus the inventory write.
	Expires time.Time
	// Replaces is a serial of the user's that this certificate supersedes
	// and that is revoked once it is issued (renew with "revoke the old
	// one"): while it is active it does not count, so renewal works at the
	// cap. Two reservations replacing the same certificate count it once.
	Replaces string
}

// ExpiryStats are the numbers behind the certificate metrics at one moment,
// counted in the database (store.Certificates.ExpiryStats).
type ExpiryStats struct {
	// Active (unrevoked, valid at the moment), Expired (unrevoked, past
	// not_after) and Revoked: every inventory row is in exactly one.
	Active, Expired, Revoked int
	// Expiring[i] counts the active certificates that expire within
	// Within[i] of the moment and are not renewed: their owner holds no
	// newer unrevoked certificate still valid (the reminders' definition).
	// Cumulative: a certificate within 1d is also within 7d.
	Expiring []int
	// NextExpiry is the earliest not_after of an active certificate
	// (renewed or not); zero when there is none.
	NextExpiry time.Time
}

// Certificates is the inventory.
type Certificates interface {
	// InsertCertificate adds a row; ErrConflict when the serial exists.
	InsertCertificate(ctx context.Context, c *Certificate) error
	GetCertificate(ctx context.Context, serial string) (*Certificate, error)
	ListCertificates(ctx context.Context, f CertificateFilter) ([]*Certificate, error)
	CountActive(ctx context.Context, username string, at time.Time) (int, error)
	// ReserveIssuance takes one of r.Username's places and returns the
	// reservation's id, or ErrCapReached when all r.Max are taken. Counting
	// and taking are one step, serialised per user across every process
	// sharing the database.
	ReserveIssuance(ctx context.Context, r Reservation) (string, error)
	// ReleaseReservation gives the place back (the issuance failed before
	// anything was recorded). Releasing an unknown or consumed id is no error.
	ReleaseReservation(ctx context.Context, id string) error
	// MarkRevoked records a revocation; ErrNotFound for an unknown serial.
	// Revoking twice keeps the first record.
	MarkRevoked(ctx context.Context, serial string, r Revocation) error
	// SearchUsers lists users with certificates whose name starts with prefix.
	SearchUsers(ctx context.Context, prefix string, at time.Time, limit int) ([]UserSummary, error)

	// InventoryCounts counts the inventory by state at at, in the database.
	InventoryCounts(ctx context.Context, at time.Time) (InventoryCounts, error)
	// InventoryByUser lists users after afterUser, in name order, with their
	// active (at at) and total certificates.
	InventoryByUser(ctx context.Context, at time.Time, afterUser string, limit int) ([]UserSummary, error)
	// ListInventory returns one page of f's certificates, in serial order.
	ListInventory(ctx context.Context, f InventoryFilter) ([]*Certificate, error)
	// StreamInventory calls fn for each of f's certificates, in serial
	// order, without holding them all in memory (Limit is ignored).
	StreamInventory(ctx context.Context, f InventoryFilter, fn func(*Certificate) error) error
	// CertificatesBySerials returns the rows among serials that exist, in no
	// particular order; unknown serials are simply absent. Reconciliation
	// checks Vault's serials in batches with it, so no caller needs the
	// whole inventory in memory; any number of serials is accepted.
	CertificatesBySerials(ctx context.Context, serials []string) ([]*Certificate, error)

	// ActiveUsers lists, in name order after afterUser, the users holding
	// at least one active certificate (unrevoked, valid at at): the
	// offboarding sweep pages through it instead of loading the inventory.
	ActiveUsers(ctx context.Context, at time.Time, afterUser string, limit int) ([]string, error)
	// CountActiveUsers counts the users ActiveUsers would list.
	CountActiveUsers(ctx context.Context, at time.Time) (int, error)

	// ExpiryStats counts the inventory for the metrics at at, with one
	// Expiring count per window in within (ascending, positive). It is
	// answered from indexes in the database: no row reaches the process.
	ExpiryStats(ctx context.Context, at time.Time, within []time.Duration) (ExpiryStats, error)
}

// Locker runs background work (the offboarding sweep) on one replica at a
// time. TryLock takes the named lock without waiting: ok is false while
// another holder has it. PostgreSQL holds it as a session advisory lock, so
// a replica that dies releases it with its connection; SQLite, which one
// process serves, holds it in process. LockHeld reports whether someone
// (this process or another replica) holds the named lock, without taking
// it: a status read must not stand in a holder's way for a moment.
type Locker interface {
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
	LockHeld(ctx context.Context, name string) (bool, error)
}

// AuditFilter selects audit events; zero fields select everything.
type AuditFilter struct {
	Actor, Subject, Action, Outcome, Serial string
	From, To                                time.Time // [From, To)
	BeforeID                                int64     // keyset pagination: events with id < BeforeID
	// AfterID pages the other way, towards newer events: QueryAudit
	// returns the Limit events closest above AfterID (still newest first).
	AfterID int64
	Limit   int
}

// DayCount is one day of the activity chart.
type DayCount struct {
	Day          time.Time // UTC midnight
	Issued       int
	Revoked      int
	FailedLogins int
}

// Audit is the append-only, hash-chained audit trail.
type Audit interface {
	// AppendAudit assigns e its id and chain hash and stores it, atomically
	// with respect to other appends.
	AppendAudit(ctx context.Context, e *audit.Event) error
	// AppendAuditDeferred is AppendAudit for events that record something
	// already done (a finished download): the store may hold the commit
	// briefly to share it with other writes. It still returns only once the
	// event is stored.
	AppendAuditDeferred(ctx context.Context, e *audit.Event) error
	// QueryAudit returns one page, newest first.
	QueryAudit(ctx context.Context, f AuditFilter) ([]*audit.Event, error)
	// StreamAudit calls fn for every matching event, oldest first, without
	// holding them all in memory.
	StreamAudit(ctx context.Context, f AuditFilter, fn func(*audit.Event) error) error
	AuditDaily(ctx context.Context, from, to time.Time) ([]DayCount, error)

	// RecordIssuance inserts the inventory row and its audit event in one
	// transaction: both are written or neither is. The same transaction
	// consumes reservation (from ReserveIssuance; "" for none), so the place
	// passes from the reservation to the certificate without a moment in
	// which it counts twice or not at all. A reservation that has already
	// expired does not stop the record: the certificate exists, and the
	// inventory must know it.
	RecordIssuance(ctx context.Context, reservation string, c *Certificate, e *audit.Event) error
	// RecordRevocation marks the revocation and appends its event in one transaction.
	RecordRevocation(ctx context.Context, serial string, r Revocation, e *audit.Event) error
}

// LoginAttemptVerdict is what TakeLoginAttempt decided.
type LoginAttemptVerdict struct {
	Allowed      bool
	FirstRefusal bool      // the first refusal of this run: worth recording
	RetryAt      time.Time // when refused: when the run ends
}

// LoginAttempts counts login attempts per key (the portal uses a keyed hash
// of the submitted username, never the name itself) where every replica
// sees the same counts. Attempts are counted in runs, as Vault's userpass
// lockout counts failures: a run ends reset after its last counted attempt.
type LoginAttempts interface {
	// TakeLoginAttempt counts one attempt against key at now if its run
	// holds fewer than limit, atomically across replicas; otherwise it
	// refuses, and the refusal does not extend the run.
	TakeLoginAttempt(ctx context.Context, key string, limit int, reset time.Duration, now time.Time) (LoginAttemptVerdict, error)
	// RefundLoginAttempt takes one counted attempt back (it was not a wrong password).
	RefundLoginAttempt(ctx context.Context, key string) error
	// ClearLoginAttempts ends key's run (a successful login).
	ClearLoginAttempts(ctx context.Context, key string) error
	// DeleteStaleLoginAttempts removes runs whose last attempt is before before.
	DeleteStaleLoginAttempts(ctx context.Context, before time.Time) (int64, error)
}

// Notification states. A row is written pending before anything is sent;
// a runner claims it (sending, with a lease) right before it sends, and
// records the outcome in the same transaction as the outcome's audit event.
const (
	NotifyPending   = "pending"   // due; waiting for next_attempt
	NotifySending   = "sending"   // claimed by a runner until lease_until
	NotifySent      = "sent"      // the channel accepted it
	NotifyFailed    = "failed"    // given up: permanent error or too many attempts
	NotifyCancelled = "cancelled" // the certificate was revoked or renewed first
	NotifySkipped   = "skipped"   // a more urgent threshold for it became due first
	// NotifyUnknown: the runner holding the claim stopped mid-send (a crash)
	// and its lease ran out. It is never sent again: the channel may have
	// accepted it already (at most once, docs/notifications.md).
	NotifyUnknown = "unknown"
)

// ThresholdExpired is the threshold of the notice sent once a certificate
// has expired (the others are the time left before expiry).
const ThresholdExpired time.Duration = 0

// ThresholdOffboardHeld marks a notice about a held offboarding sweep (to
// the helpdesk), not a certificate: its serial is NoticeSerial of the
// offboard.held audit event it tells of.
const ThresholdOffboardHeld time.Duration = -time.Second

// NoticeSerial is the serial column of a notice about audit event id: no
// certificate serial has this form, so the unique key makes the notice once
// per event.
func NoticeSerial(id int64) string { return "event:" + strconv.FormatInt(id, 10) }

// NoticeEvent is the audit event id a notice's serial names; false for a
// certificate's reminder.
func NoticeEvent(serial string) (int64, bool) {
	rest, ok := strings.CutPrefix(serial, "event:")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	return id, err == nil && id > 0
}

// Notification is one reminder for one certificate, threshold and channel.
type Notification struct {
	ID          int64
	Serial      string
	Username    string
	Threshold   time.Duration // time left before expiry it reminds of; ThresholdExpired after
	Channel     string        // email, webhook, helpdesk
	State       string
	Attempts    int
	NextAttempt time.Time
	LeaseUntil  time.Time
	Lease       string // the claiming runner's random token while sending
	LastError   string
	CreatedAt   time.Time
	SentAt      time.Time // zero until sent
	NotAfter    time.Time // the certificate's expiry, joined in for the message
}

// Band asks EnqueueReminders to record, for every certificate that is
// unrevoked, not renewed (no newer unrevoked one of the same user valid at
// At), whose validity is longer than Threshold and whose expiry lies in
// (From, To], one pending notification per channel.
type Band struct {
	Threshold time.Duration
	From, To  time.Time
	At        time.Time // now: a renewal must still be valid at At
	Channels  []string
	MinValid  time.Duration // only certificates valid (not_after - issued_at) longer than this
}

// Notifications is the reminder outbox. Every method is one SQL statement
// or transaction: nothing loads the inventory into memory.
type Notifications interface {
	// EnqueueReminders inserts b's pending rows (existing ones are kept)
	// and returns how many it added.
	EnqueueReminders(ctx context.Context, b Band, now time.Time) (int, error)
	// SkipSuperseded marks pending rows skipped where a more urgent
	// threshold of the same certificate and channel is recorded too.
	SkipSuperseded(ctx context.Context) (int, error)
	// ClaimNotification takes one pending row whose next_attempt has come,
	// marks it sending under lease until leaseUntil, counts the attempt,
	// and returns it; ErrNotFound when none is due. Two runners never
	// claim the same row.
	ClaimNotification(ctx context.Context, now, leaseUntil time.Time, lease string) (*Notification, error)
	// FinishNotification records the outcome of a claimed row (state, next
	// attempt, attempts, error) with its audit event, in one transaction, provided
	// the row is still sending under lease; ErrConflict otherwise. A nil
	// event records the outcome alone (a retry, a cancellation).
	FinishNotification(ctx context.Context, n *Notification, e *audit.Event) error
	// ExpiredLeases lists rows still sending whose lease ended before now.
	ExpiredLeases(ctx context.Context, now time.Time, limit int) ([]*Notification, error)
	// DeferNotifications moves the pending rows of channels whose next
	// attempt is before until to until (quiet hours), without counting an
	// attempt, and returns how many it moved.
	DeferNotifications(ctx context.Context, channels []string, until time.Time) (int, error)
	// RecordNotice appends e and, in the same transaction, one pending
	// notification per channel about it: serial NoticeSerial(e.ID),
	// username "", threshold kind, due at now. Both are written or neither.
	RecordNotice(ctx context.Context, e *audit.Event, kind time.Duration, channels []string, now time.Time) error
	// ListNotifications lists a user's notifications, newest first.
	ListNotifications(ctx context.Context, username string, limit int) ([]*Notification, error)

	// SetUserLanguage remembers the UI language a user last chose, for
	// messages sent when they are not there to ask.
	SetUserLanguage(ctx context.Context, username, lang string, at time.Time) error
	// UserLanguage is that language; "" when none was recorded.
	UserLanguage(ctx context.Context, username string) (string, error)
}

// Enrolment is a one-time MFA enrolment link a helpdesk agent handed out.
// Only the hash of the link's token is kept: the store can neither show nor
// use a link it holds.
type Enrolment struct {
	TokenHash string
	Username  string
	CreatedBy string
	Ticket    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Enrolments keeps one-time enrolment links.
type Enrolments interface {
	// CreateEnrolment stores e; earlier unused links of the same user are
	// deleted with it (a new link replaces the old one).
	CreateEnrolment(ctx context.Context, e *Enrolment) error
	// UseEnrolment consumes the link atomically: the first call before
	// ExpiresAt gets it, every later one (and any call after it expired)
	// ErrNotFound. username must match the link's.
	UseEnrolment(ctx context.Context, tokenHash, username string, now time.Time) (*Enrolment, error)
}

// Store is the whole persistence interface the portal needs.
type Store interface {
	Sessions
	Certificates
	Audit
	LoginAttempts
	Notifications
	Enrolments
	Reconciliations
	Locker
	// Ping checks the store takes writes now, not only reads: it answers
	// and commits a one-row write (store_probe) as issuance would. A full
	// disk, a read-only database (a standby after a failover) or a lost
	// connection fail it, so /readyz says so before a user's issuance does.
	Ping(ctx context.Context) error
	Close() error
}

// Kinds of certificate Vault stores, as reconciliation classifies them.
const (
	VaultKindClient = "client" // may authenticate a client: the inventory should know it
	VaultKindServer = "server" // serverAuth without clientAuth: the portal's Nginx certificates
	VaultKindCA     = "ca"     // a CA in the mount's list: not a user certificate
)

// VaultCert is what reconciliation learned of one certificate Vault
// stores, kept so that each serial is read from Vault once, ever; only its
// revocation changes, and that comes from Vault's list of revoked serials.
type VaultCert struct {
	Serial   string // the inventory's form (aa:bb:…)
	Subject  string // CN
	NotAfter time.Time
	Revoked  bool
	Kind     string // VaultKind*
}

// VaultCertState is a cached certificate as a run's merge with Vault's
// list sees it.
type VaultCertState struct {
	Serial  string
	Revoked bool
	Kind    string
}

// Reconciliation groups, as the JSON form names them.
const (
	ReconcileVaultOnly     = "vault_only"
	ReconcileInventoryOnly = "inventory_only"
	ReconcileStateMismatch = "state_mismatch"
	ReconcileKnown         = "known"
)

// Reconcile run states.
const (
	RunRunning = "running"
	RunDone    = "done"
	RunFailed  = "failed"
	// RunInterrupted is the Error of a run found still running when the
	// next one starts (its replica died); a catalog key.
	RunInterrupted = "error.reconcile_interrupted"
)

// ReconcileRun is one reconciliation: its progress while it runs, its
// counts once done. Its entries are kept with it (ReconcileResults).
type ReconcileRun struct {
	ID                    int64
	By                    string // who asked for it
	State                 string // Run*
	StartedAt, FinishedAt time.Time
	Error                 string // why it failed, for the auditor (no secrets: a fixed text)
	Listed                int    // serials in Vault's list
	ToRead, Read          int    // serials new to the cache, and how many of them are read so far
	VaultReads            int    // certificates read from Vault in this run (new ones and confirmations)
	// ResultsRun is the run whose entries this one shows, 0 for its own: a
	// run that found nothing changed since the last one keeps its results
	// (ReconcileResults and PruneReconcileRuns follow it).
	ResultsRun int64
	ReconcileCounts
}

// ReconcileCounts are a run's totals and group sizes.
type ReconcileCounts struct {
	VaultTotal, InventoryTotal                     int
	VaultOnly, InventoryOnly, StateMismatch, Known int
	// ExpiredTidied counts the inventory rows Vault does not hold that had
	// expired when the run computed its groups: Vault's tidy removes
	// expired certificates, so these are normal and not listed (no
	// entries); InventoryOnly holds only the unexpired ones.
	ExpiredTidied int
}

// ReconcileEntry is one certificate of a reconciliation group.
type ReconcileEntry struct {
	Serial   string
	Subject  string
	NotAfter time.Time
	Revoked  bool
}

// Reconciliations keep what reconciliation learned from Vault (the
// vault_certs cache) and its runs with their results.
type Reconciliations interface {
	// VaultCerts pages through the cache in serial order after after.
	VaultCerts(ctx context.Context, after string, limit int) ([]VaultCert, error)
	// VaultCertStates is VaultCerts with only what a run's merge with
	// Vault's list needs: serial, revocation and kind.
	VaultCertStates(ctx context.Context, after string, limit int) ([]VaultCertState, error)
	// PutVaultCerts adds (or replaces) certificates learned from Vault.
	PutVaultCerts(ctx context.Context, certs []VaultCert) error
	// DeleteVaultCerts forgets serials Vault no longer lists.
	DeleteVaultCerts(ctx context.Context, serials []string) error
	// SetVaultCertsRevoked sets the revocation state of serials.
	SetVaultCertsRevoked(ctx context.Context, serials []string, revoked bool) error

	// StartReconcileRun records a new run, sets its state to running and
	// returns its id. The caller holds the reconcile lock, so any other run
	// still marked running was cut off: it is marked failed
	// (RunInterrupted).
	StartReconcileRun(ctx context.Context, r *ReconcileRun) (int64, error)
	// ClaimInventoryChanges reports whether the inventory changed (any
	// insert, update or delete of a certificate row, by the portal or
	// directly in the database) since the last claim, and clears the mark;
	// a change committed after the claim marks it again. The caller holds
	// the reconcile lock.
	ClaimInventoryChanges(ctx context.Context) (changed bool, err error)
	// UpdateReconcileRun writes r's progress, state and counts.
	UpdateReconcileRun(ctx context.Context, r *ReconcileRun) error
	// ReconcileRuns returns the newest run whatever its state and the
	// newest finished one (nil where there is none).
	ReconcileRuns(ctx context.Context) (latest, lastDone *ReconcileRun, err error)
	// FillReconcileResults stores run's vault_only, known and
	// inventory_only entries, computed in the database from the cache and
	// the inventory (nothing passes through memory), and returns the counts
	// (StateMismatch left zero: its entries are confirmed one by one and
	// added with AddReconcileResults). An inventory row Vault does not hold
	// is an inventory_only entry if it has not expired at at (not_after >
	// at), else only counted (ExpiredTidied).
	FillReconcileResults(ctx context.Context, runID int64, at time.Time) (ReconcileCounts, error)
	// MismatchCandidates pages, in serial order after after, through the
	// inventory rows whose revocation differs from the cache's.
	MismatchCandidates(ctx context.Context, after string, limit int) ([]*Certificate, error)
	// AddReconcileResults stores entries of one group of a run.
	AddReconcileResults(ctx context.Context, runID int64, group string, entries []ReconcileEntry) error
	// ReconcileResults pages through one group of a run in serial order
	// (the entries of the run it shows, see ResultsRun).
	ReconcileResults(ctx context.Context, runID int64, group, after string, limit int) ([]ReconcileEntry, error)
	// PruneReconcileRuns deletes the results of every run but keep (those
	// it shows, see ResultsRun), and runs older than it.
	PruneReconcileRuns(ctx context.Context, keep int64) error
}
