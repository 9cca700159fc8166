package portal

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/vault"
)

// ReconcileOptions are the background reconciliation's settings.
type ReconcileOptions struct {
	// AutoRevokeAfter: a certificate Vault issued from the users' role
	// that the inventory does not know (vault_only) is revoked once its
	// validity began longer ago than this; 0 revokes nothing
	// automatically. It must outlast any issuance still under way
	// (IssueTimeout) plus Vault's backdating of not_before (30 s as setup
	// writes the role): config checks it.
	AutoRevokeAfter time.Duration
	// AutoRevokePerUserMax: an employee with more certificates to revoke
	// than this has theirs held, and is named, while others' are revoked
	// (planAutoRevoke). 0 means 5. Config keeps it below AutoRevokeMax, so
	// one employee alone can never hold everyone.
	AutoRevokePerUserMax int
	// AutoRevokeMax bounds the certificates one run revokes, counted over
	// the employees not held alone: more, and the run holds everything and
	// revokes none, as a restored or wrong database makes every
	// certificate issued since look vault_only. 0 means 20.
	AutoRevokeMax int
}

// The scopes of a hold, as reconcile.held's "scope" and the
// certportal_reconcile_held_scope label name them.
const (
	HoldScopeEmployees = "employees" // some employees' certificates held, others' revoked
	HoldScopeAll       = "all"       // nothing revoked
	// HoldScopeUnattributed: client certificates for addresses in the
	// users' domain that name no employee are held (never revoked
	// automatically); with HoldScopeEmployees too, the scope is
	// "employees+unattributed".
	HoldScopeUnattributed = "unattributed"
)

// ReconcileActor is who the trail names for what the background
// reconciliation does.
const ReconcileActor = "certportal"

// ReasonIssuedAroundPortal is the revocation reason the background
// reconciliation records: Vault issued it, the portal has no record of it.
const ReasonIssuedAroundPortal = "issued_around_portal"

// ReconcileJobResult is what one background reconciliation saw and did.
type ReconcileJobResult struct {
	VaultOnly int // unrevoked vault_only certificates seen
	Eligible  int // of those, the portal's users' certificates past the grace
	// Unattributed: of those, client certificates past the grace in the
	// users' roles' shape, for an address in the users' domain, that
	// name no portal user: held (HeldWhy says so), never revoked
	// automatically.
	Unattributed int
	Revoked      int
	Failed       int // revocations that failed (tried again next run)
	// Held: a hold is in force after this run. HeldAll: nothing was
	// revoked (the employees not held alone had more than AutoRevokeMax
	// certificates to revoke); otherwise HeldUsers lists the employees
	// with more than AutoRevokePerUserMax certificates to revoke, whose
	// certificates were left alone while everyone else's were revoked
	// (but for the oldest of each past MaxActive: OverCap, revoked and
	// counted in Revoked), and Unattributed > 0 holds too.
	Held      bool
	HeldAll   bool
	HeldUsers []HeldUser
	HeldWhy   string
	OverCap   int // held employees' certificates revoked for being past MaxActive
	// Strangers: of Eligible, those naming a user Vault's userpass mount
	// does not list (a leaver, a made-up name): revoked within what the
	// run's bound leaves, never counted towards a hold.
	Strangers int
	Skipped   bool // another replica was reconciling
}

// HoldScope is the scope of the hold this run left in force:
// HoldScopeAll, HoldScopeEmployees, HoldScopeUnattributed, both of the
// last two joined by "+", or "" for none.
func (r *ReconcileJobResult) HoldScope() string {
	switch {
	case r.HeldAll:
		return HoldScopeAll
	case !r.Held:
		return ""
	}
	var parts []string
	if len(r.HeldUsers) > 0 {
		parts = append(parts, HoldScopeEmployees)
	}
	if r.Unattributed > 0 {
		parts = append(parts, HoldScopeUnattributed)
	}
	return strings.Join(parts, "+")
}

// HeldUser is an employee whose certificates issued around the portal a
// reconciliation holds, with how many it holds.
type HeldUser struct {
	Username     string
	Certificates int
}

// candidate is a vault_only certificate the job may revoke, with what
// showed it to be the portal's to revoke. user "" is a certificate in the
// users' roles' shape whose names attribute it to no portal user
// (attributable): held, never revoked automatically.
type candidate struct {
	serial, user, subject, evidence string
	notBefore                       time.Time
}

// DefaultAutoRevokeMax is the run's bound on automatic revocations when
// none is set.
const DefaultAutoRevokeMax = 20

// DefaultAutoRevokePerUserMax is the per-employee bound when none is set:
// 5, kept below the run's bound runMax (which an operator may have lowered
// to 5 or less before the per-employee bound existed: their configuration
// still starts). With a run's bound of 1 there is no smaller one, and the
// two are equal. config derives the setting from it; Options left at 0
// (tests) get the same.
func DefaultAutoRevokePerUserMax(runMax int) int {
	return max(1, min(5, runMax-1))
}

func (s *Service) autoRevokeMax() int {
	if s.opts.Reconcile.AutoRevokeMax <= 0 {
		return DefaultAutoRevokeMax
	}
	return s.opts.Reconcile.AutoRevokeMax
}

func (s *Service) autoRevokePerUserMax() int {
	if s.opts.Reconcile.AutoRevokePerUserMax <= 0 {
		return DefaultAutoRevokePerUserMax(s.autoRevokeMax())
	}
	return s.opts.Reconcile.AutoRevokePerUserMax
}

// ReconcileJob runs one background reconciliation: it compares Vault with
// the inventory as an auditor's reconciliation does and, when
// AutoRevokeAfter is set, revokes the vault_only certificates that are
// the portal's users' (attributable: see attributable) and older than the
// grace, with actor "certportal", reason and evidence on the record:
// intent first, then Vault, then the result, as every revocation. One
// replica at a time (store lock). A run that revokes nothing records
// nothing, so an idle portal does not fill the trail.
func (s *Service) ReconcileJob(ctx context.Context) (*ReconcileJobResult, error) {
	unlock, ok, err := s.store.TryLock(ctx, reconcileLock)
	if err != nil {
		s.opts.Metrics.ReconcileRun("failed", 0, s.now())
		return nil, fmt.Errorf("reconcile job: %w", err)
	}
	if !ok {
		s.opts.Metrics.ReconcileRun("skipped", 0, s.now())
		s.reconcileHeldFromTrail(ctx)
		return &ReconcileJobResult{Skipped: true}, nil
	}
	defer unlock()
	res, err := s.reconcileJob(ctx)
	result, vaultOnly := "ok", 0
	if res != nil {
		vaultOnly = res.VaultOnly
	}
	// Failed before held: while one employee is held, a run that failed to
	// revoke other employees' certificates (Failed > 0 always comes with
	// an error) is a failure, and counts as one.
	switch {
	case err != nil || res.Failed > 0:
		result = "failed"
	case res.Held:
		result = "held"
	}
	s.opts.Metrics.ReconcileRun(result, vaultOnly, s.now())
	if err != nil {
		// The run may have stopped before it recorded the hold it found,
		// or its end: the trail says what is in force.
		s.reconcileHeldFromTrail(ctx)
	} else {
		s.opts.Metrics.ReconcileHeld(res.HoldScope())
	}
	return res, err
}

func (s *Service) reconcileJob(ctx context.Context) (*ReconcileJobResult, error) {
	av, err := s.auditorVault()
	if err != nil {
		return nil, err
	}
	// The same run an auditor asks for (reconcile.go: only serials new to
	// the cache are read from Vault), shown on the page, but not put in the
	// trail here: a run that revokes nothing records nothing.
	run, err := s.reconcileLocked(ctx, av, ReconcileActor, false)
	if err != nil {
		return nil, err
	}
	res := &ReconcileJobResult{}
	grace := s.opts.Reconcile.AutoRevokeAfter
	now := s.now()
	var todo, unattributed []candidate
	for after := ""; ; {
		page, err := s.store.ReconcileResults(ctx, run.ID, store.ReconcileVaultOnly, after, reconcileCachePage)
		if err != nil {
			return nil, storeUnavailable(err)
		}
		for _, e := range page {
			if e.Revoked || !now.Before(e.NotAfter) {
				continue // nothing left to take away
			}
			res.VaultOnly++
			if grace <= 0 {
				continue
			}
			c, err := s.attributable(ctx, e.Serial, now, grace)
			if err != nil {
				return nil, err
			}
			switch {
			case c == nil:
			case c.user == "":
				unattributed = append(unattributed, *c)
			default:
				todo = append(todo, *c)
			}
		}
		if len(page) < reconcileCachePage {
			break
		}
		after = page[len(page)-1].Serial
	}
	res.Eligible, res.Unattributed = len(todo), len(unattributed)
	if res.VaultOnly > 0 {
		s.log.WarnContext(ctx, "reconciliation: certificates issued around the portal", "vault_only", res.VaultOnly,
			"to_revoke", len(todo), "unattributed", len(unattributed), "auto_revoke_after", grace)
	}
	if len(todo) == 0 && len(unattributed) == 0 {
		return res, s.reconcileResumed(ctx, res)
	}
	todo, strangers, err := s.splitStrangers(ctx, todo)
	if err != nil {
		return nil, err
	}
	res.Strangers = len(strangers)
	// A client certificate for an address in the users' domain that
	// names no portal user is held, never revoked: the per-employee bound
	// cannot count it against anyone, whoever issued it (another role,
	// an admin token) may have meant it, and revoking what the portal
	// cannot attribute is the guess automatic revocation must not make.
	// Skipping it silently is worse: whatever trusts the CA would admit
	// it, and a relying application that folds case (or Unicode) may take
	// it for a user. So it holds the run, as an employee over the bound
	// does: reconcile.held names its serials, certportal_reconcile_held
	// alerts, and an operator finds who issued it (Vault's audit log) and
	// revokes it from the helpdesk's vault-only view; the hold ends when
	// none is left.
	unattributedWhy := ""
	if len(unattributed) > 0 {
		unattributedWhy = fmt.Sprintf("%d client certificates issued around the portal for addresses in %s that name no portal user: not revoked automatically; find out who issued them, then revoke them from the helpdesk's vault-only view",
			len(unattributed), s.opts.EmailDomain)
	}
	plan := planAutoRevoke(todo, strangers, s.autoRevokePerUserMax(), s.autoRevokeMax(), s.opts.MaxActive)
	if plan.all {
		res.Held, res.HeldAll = true, true
		res.HeldWhy = fmt.Sprintf("%d certificates of %d employees issued around the portal are past the grace, more than the limit of %d a run revokes: is this the right database?",
			len(plan.revoke), plan.revocableUsers, s.autoRevokeMax())
		if unattributedWhy != "" {
			res.HeldWhy += "; " + unattributedWhy
		}
		s.log.ErrorContext(ctx, "reconciliation held: nothing revoked automatically; check the database, then revoke from the helpdesk's vault-only view or raise CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX",
			"why", res.HeldWhy)
		return res, s.recordReconcileHeld(ctx, res, HoldScopeAll, slices.Concat(todo, strangers, unattributed), nil, grace)
	}
	var scope, why []string
	if len(plan.held) > 0 {
		res.HeldUsers = plan.heldUsers
		scope = append(scope, HoldScopeEmployees)
		why = append(why, fmt.Sprintf("%s: more certificates issued around the portal past the grace than the limit of %d per employee; theirs are held, other employees' are revoked",
			heldList(plan.heldUsers), s.autoRevokePerUserMax()))
		if len(plan.overCap) > 0 {
			why[0] += fmt.Sprintf("; %d of theirs, the oldest past the %d valid certificates the portal ever gives an employee, are revoked (at most %d a run), so each keeps at most %d held",
				len(plan.overCap), s.opts.MaxActive, s.autoRevokeMax(), s.opts.MaxActive)
		}
		s.log.ErrorContext(ctx, "reconciliation held for some employees: their certificates issued around the portal are not revoked automatically; revoke them from the helpdesk's vault-only view, or raise CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX",
			"why", why[0], "held_employees", heldNames(plan.heldUsers), "held_certificates", len(plan.held), "revoking", len(plan.revoke), "revoking_over_cap", len(plan.overCap))
	}
	if len(unattributed) > 0 {
		scope = append(scope, HoldScopeUnattributed)
		why = append(why, unattributedWhy)
		subjects := make([]string, len(unattributed))
		for i, c := range unattributed {
			subjects[i] = c.subject
		}
		s.log.ErrorContext(ctx, "reconciliation held certificates that name no portal user: not revoked automatically; find out who issued them and revoke them from the helpdesk's vault-only view",
			"why", unattributedWhy, "unattributed", len(unattributed), "subjects", sample(subjects, 20))
	}
	if len(scope) > 0 {
		res.Held = true
		res.HeldWhy = strings.Join(why, "; ")
		if err := s.recordReconcileHeld(ctx, res, strings.Join(scope, "+"), slices.Concat(plan.held, unattributed), plan.heldUsers, grace); err != nil {
			return nil, err
		}
	} else if err := s.reconcileResumed(ctx, res); err != nil {
		return nil, err
	}
	todo = plan.revoke
	for _, c := range plan.overCap {
		c.evidence += fmt.Sprintf("; %s holds more certificates issued around the portal than the %d valid ones the portal ever gives an employee, so the oldest of them cannot be the portal's",
			c.user, s.opts.MaxActive)
		todo = append(todo, c)
	}
	res.OverCap = len(plan.overCap)
	todo = append(todo, plan.strangers...)
	if left := len(strangers) - len(plan.strangers); left > 0 {
		s.log.WarnContext(ctx, "reconciliation: certificates naming no Vault user left for the next runs (the run's bound)",
			"left", left, "revoking", len(plan.strangers), "max", s.autoRevokeMax())
	}
	if len(todo) == 0 {
		return res, nil // held, nothing else to revoke: nothing more to record
	}
	var firstErr error
	for _, c := range todo {
		if err := s.autoRevoke(ctx, c, grace); err != nil {
			res.Failed++
			firstErr = cmpErr(firstErr, err)
			s.log.ErrorContext(ctx, "reconciliation: automatic revocation failed; the next run tries again", "serial", c.serial, "err", err)
			continue
		}
		res.Revoked++
	}
	details := runCounts(run)
	details["auto_revoked"], details["failed"], details["auto_revoke_after"] = itoa(res.Revoked), itoa(res.Failed), grace.String()
	if res.OverCap > 0 {
		details["over_cap"] = itoa(res.OverCap)
	}
	if len(plan.strangers) > 0 {
		details["no_vault_user"] = itoa(len(plan.strangers))
	}
	if len(res.HeldUsers) > 0 {
		details["held_employees"] = heldList(res.HeldUsers)
	}
	outcome := audit.OutcomeSuccess
	if res.Failed > 0 {
		outcome = audit.OutcomeFailure
	}
	if err := s.record(ctx, s.newEvent(ctx, ReconcileActor, "", audit.ActionReconcile, outcome, "", details)); err != nil {
		return res, err
	}
	if firstErr != nil {
		return res, fmt.Errorf("reconcile job: %d automatic revocations failed: %w", res.Failed, firstErr)
	}
	return res, nil
}

// autoRevokePlan is what one run does with its candidates.
type autoRevokePlan struct {
	revoke         []candidate // the certificates of employees within the per-employee bound
	overCap        []candidate // held employees' oldest, past what the portal could have given them: revoked
	strangers      []candidate // of those naming no Vault user, the ones this run revokes
	held           []candidate // the rest of those of employees over it
	heldUsers      []HeldUser  // by name, with the certificates left held
	revocableUsers int         // employees in revoke
	all            bool        // hold everything: revoke holds more than the run's bound
}

// planAutoRevoke applies the two bounds of automatic revocation:
//   - per employee (perUser, CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX):
//     an employee with more than perUser certificates to revoke has them
//     held and is named (an employee minting certificates straight from
//     Vault in bulk, or automation under their name: an operator decides),
//     while other employees' are revoked. No employee's certificates can
//     hold anyone else's.
//   - per run (limit, CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX): when the
//     certificates of the employees within that bound number more than
//     limit, nothing is revoked. A restored or wrong database makes every
//     certificate issued since look vault_only at once, a few for each of
//     many employees; so a run never revokes more than limit certificates,
//     however few employees there are. Held employees do not count, and
//     config keeps perUser below limit, so one employee cannot make this
//     bound either.
//
// A held employee keeps at most maxActive of theirs (CERTPORTAL_MAX_ACTIVE,
// the newest): the portal never lets an employee hold more than maxActive
// valid certificates at once (every issuance path takes a place under that
// cap first), so of more than that issued around it at least the excess
// cannot be ones it handed out, restored database or not. The oldest of
// those go in overCap and are revoked, within what is left of the run's
// bound after the others' (the rest in the next runs), so that minting past the per-employee bound does not buy
// unlimited certificates until an operator acts: only maxActive, still held
// and alerted. Not under a hold of everything, which revokes nothing.
//
// Certificates naming no user of Vault's userpass mount (strangers: a
// leaver's, or made-up names, say a helpdesk member's through the
// on-behalf role straight from Vault) are no employee's to protect:
// they are revoked, oldest first, with what the bound leaves after
// overCap, the rest in the next runs. They count towards neither bound,
// so made-up names cannot hold everyone's revocations.
func planAutoRevoke(todo, strangers []candidate, perUser, limit, maxActive int) autoRevokePlan {
	byUser := map[string][]candidate{}
	var users []string
	for _, c := range todo {
		if byUser[c.user] == nil {
			users = append(users, c.user)
		}
		byUser[c.user] = append(byUser[c.user], c)
	}
	slices.Sort(users)
	var p autoRevokePlan
	var over []string // held employees
	for _, u := range users {
		if cs := byUser[u]; len(cs) <= perUser {
			p.revoke = append(p.revoke, cs...)
			p.revocableUsers++
		} else {
			over = append(over, u)
		}
	}
	p.all = len(p.revoke) > limit
	budget := 0 // what is left of the run's bound
	if !p.all {
		budget = limit - len(p.revoke)
	}
	for _, u := range over {
		cs := byUser[u]
		slices.SortFunc(cs, oldestFirst)
		n := min(max(0, len(cs)-maxActive), budget)
		budget -= n
		p.overCap = append(p.overCap, cs[:n]...)
		p.held = append(p.held, cs[n:]...)
		p.heldUsers = append(p.heldUsers, HeldUser{Username: u, Certificates: len(cs) - n})
	}
	strangers = slices.Clone(strangers)
	slices.SortFunc(strangers, oldestFirst)
	p.strangers = strangers[:min(len(strangers), budget)]
	return p
}

func oldestFirst(a, b candidate) int {
	return cmp.Or(a.notBefore.Compare(b.notBefore), strings.Compare(a.serial, b.serial))
}

// splitStrangers takes out of todo the certificates whose user Vault's
// userpass mount does not list (planAutoRevoke). A mount that lists no
// user at all makes nobody a stranger: that is the wrong mount, or an
// answer that cannot be right, not a company of leavers.
func (s *Service) splitStrangers(ctx context.Context, todo []candidate) (employees, strangers []candidate, err error) {
	if len(todo) == 0 {
		return nil, nil, nil
	}
	users, err := s.service.ListUsers(ctx, s.opts.UserpassMount)
	if err != nil {
		return nil, nil, &Error{Code: EUnavailable, Message: "error.vault_unavailable", Err: fmt.Errorf("reconcile job: list users: %w", err)}
	}
	if len(users) == 0 {
		s.log.WarnContext(ctx, "reconciliation: Vault's userpass mount lists no users; every certificate is counted as an employee's", "mount", s.opts.UserpassMount)
		return todo, nil, nil
	}
	known := make(map[string]bool, len(users))
	for _, u := range users {
		known[strings.ToLower(u)] = true
	}
	for _, c := range todo {
		if known[c.user] {
			employees = append(employees, c)
			continue
		}
		c.evidence += fmt.Sprintf("; %s is not a user of Vault's %s mount (a leaver, or a made-up name)", c.user, s.opts.UserpassMount)
		strangers = append(strangers, c)
	}
	return employees, strangers, nil
}

// heldList is the held employees as the trail and logs show them:
// "alice (25) bob (22)", at most 20 named.
func heldList(us []HeldUser) string {
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = fmt.Sprintf("%s (%d)", u.Username, u.Certificates)
	}
	return sample(names, 20)
}

// heldMore is the tail sample puts on a list it cut short.
var heldMore = regexp.MustCompile(` ?\(and ([0-9]+) more\)$`)

// parseHeldList reads heldList's form back: the employees it names, each
// with its count, and how many more it left unnamed. A name without a
// count after it (an event written by hand) counts 0; names never hold a
// space (usernamePattern), so the list splits at spaces.
func parseHeldList(list string) (users []HeldUser, unnamed int) {
	if m := heldMore.FindStringSubmatchIndex(list); m != nil {
		unnamed, _ = strconv.Atoi(list[m[2]:m[3]])
		list = list[:m[0]]
	}
	fields := strings.Fields(list)
	for i := 0; i < len(fields); i++ {
		u := HeldUser{Username: fields[i]}
		if i+1 < len(fields) {
			if n, ok := heldCount(fields[i+1]); ok {
				u.Certificates = n
				i++
			}
		}
		users = append(users, u)
	}
	return users, unnamed
}

// heldCount reads heldList's "(25)".
func heldCount(f string) (int, bool) {
	if len(f) < 3 || f[0] != '(' || f[len(f)-1] != ')' {
		return 0, false
	}
	n, err := strconv.Atoi(f[1 : len(f)-1])
	return n, err == nil && n >= 0
}

func heldNames(us []HeldUser) []string {
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = u.Username
	}
	return names
}

// recordReconcileHeld records a hold: scope HoldScopeAll (nothing
// revoked), HoldScopeEmployees (the held employees' certificates only),
// HoldScopeUnattributed (certificates that name no portal user) or both
// of the last two joined by "+",
// once per hold and list, whichever replica finds it: the trail is the
// state they share.
func (s *Service) recordReconcileHeld(ctx context.Context, res *ReconcileJobResult, scope string, held []candidate, users []HeldUser, grace time.Duration) error {
	serials := make([]string, len(held))
	for i, c := range held {
		serials[i] = c.serial
	}
	details := map[string]string{
		"why": res.HeldWhy, "scope": scope, "serials": sample(serials, 20), "max": itoa(s.autoRevokeMax()),
		"per_user_max": itoa(s.autoRevokePerUserMax()), "auto_revoke_after": grace.String(),
	}
	if len(users) > 0 {
		details["held_employees"] = heldList(users)
	}
	if res.Unattributed > 0 {
		details["unattributed"] = itoa(res.Unattributed)
	}
	hold, err := s.currentReconcileHold(ctx)
	if err != nil {
		return err
	}
	if hold != nil {
		if recordedAs(decodeDetails(hold.Details), details, "why", "serials", "max", "per_user_max") {
			return nil // recorded already, for the same list
		}
	}
	return s.record(ctx, s.newEvent(ctx, ReconcileActor, "", audit.ActionReconcileHeld, audit.OutcomeDenied, "", details))
}

// currentReconcileHold is the last reconcile.held event when no
// reconcile.resumed came after it: the hold in force; nil when there is
// none.
func (s *Service) currentReconcileHold(ctx context.Context) (*audit.Event, error) {
	last := func(action, outcome string) (*audit.Event, error) {
		evs, err := s.store.QueryAudit(ctx, store.AuditFilter{Action: action, Outcome: outcome, Limit: 1})
		if err != nil {
			return nil, &Error{Code: EUnavailable, Message: "error.store_unavailable", Err: fmt.Errorf("reconcile: read the trail: %w", err)}
		}
		if len(evs) == 0 {
			return nil, nil
		}
		return evs[0], nil
	}
	held, err := last(audit.ActionReconcileHeld, audit.OutcomeDenied)
	if err != nil || held == nil {
		return nil, err
	}
	resumed, err := last(audit.ActionReconcileResumed, audit.OutcomeSuccess)
	if err != nil {
		return nil, err
	}
	if resumed != nil && resumed.ID > held.ID {
		return nil, nil
	}
	return held, nil
}

// reconcileResumed records the end of a hold in force, once: this run is
// not held.
func (s *Service) reconcileResumed(ctx context.Context, res *ReconcileJobResult) error {
	hold, err := s.currentReconcileHold(ctx)
	if err != nil || hold == nil {
		return err
	}
	return s.record(ctx, s.newEvent(ctx, ReconcileActor, "", audit.ActionReconcileResumed, audit.OutcomeSuccess, "", map[string]string{
		"held_since": fmtTime(hold.Time), "vault_only": itoa(res.VaultOnly), "max": itoa(s.autoRevokeMax()),
	}))
}

// reconcileHeldFromTrail sets certportal_reconcile_held and its scope
// from the trail, the state every replica shares, when this replica's own
// run did not decide it (it lost the lock, or failed): each replica's
// gauges then say whether, and which, hold is in force, not what it last
// saw itself.
func (s *Service) reconcileHeldFromTrail(ctx context.Context) {
	if s.opts.Metrics == nil {
		return
	}
	hold, err := s.currentReconcileHold(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "reconcile: cannot read the trail; certportal_reconcile_held and its scope unchanged", "err", err)
		return
	}
	scope := ""
	if hold != nil {
		scope = trailHoldScope(decodeDetails(hold.Details)["scope"])
	}
	s.opts.Metrics.ReconcileHeld(scope)
}

// trailHoldScope is the scope of a reconcile.held event as recorded, read
// as the gauges and the reconciliation page read it: a hold recorded
// without a scope predates scopes and held everything, as does one this
// version does not know.
func trailHoldScope(scope string) string {
	for _, part := range strings.Split(scope, "+") {
		if part != HoldScopeEmployees && part != HoldScopeUnattributed {
			return HoldScopeAll
		}
	}
	return scope
}

// ReconcileHold is the hold of automatic revocation in force, as the
// trail records it (currentReconcileHold), for the reconciliation page:
// the vault_only certificates it holds stay valid until someone revokes
// them by hand.
type ReconcileHold struct {
	EventID int64     // the reconcile.held event
	Since   time.Time // when it was recorded
	// Scope is HoldScopeAll, HoldScopeEmployees, HoldScopeUnattributed or
	// the last two joined by "+" (trailHoldScope).
	Scope string
	// HeldEmployees as the event records them: "alice (25) bob (22)", at
	// most 20 named. Names come from certificate subjects: shown escaped.
	HeldEmployees string
	// HeldUsers is HeldEmployees read back (parseHeldList), for the
	// reconciliation's JSON form; HeldUnnamed counts the employees past
	// the 20 it names ("(and 3 more)").
	HeldUsers    []HeldUser
	HeldUnnamed  int
	Unattributed int // certificates that name no employee
}

// All reports whether nothing is revoked automatically.
func (h *ReconcileHold) All() bool { return h.Scope == HoldScopeAll }

// Employees reports whether some employees' certificates are held.
func (h *ReconcileHold) Employees() bool { return h.has(HoldScopeEmployees) }

// HoldsUnattributed reports whether certificates that name no employee
// are held.
func (h *ReconcileHold) HoldsUnattributed() bool { return h.has(HoldScopeUnattributed) }

func (h *ReconcileHold) has(part string) bool {
	return slices.Contains(strings.Split(h.Scope, "+"), part)
}

// ReconcileHold returns the hold of automatic revocation in force, read
// from the trail as every replica reads it, or nil when none is.
func (s *Service) ReconcileHold(ctx context.Context, id *Identity) (*ReconcileHold, error) {
	if err := s.requireAuditor(id); err != nil {
		return nil, err
	}
	ev, err := s.currentReconcileHold(ctx)
	if err != nil || ev == nil {
		return nil, err
	}
	d := decodeDetails(ev.Details)
	h := &ReconcileHold{EventID: ev.ID, Since: ev.Time, Scope: trailHoldScope(d["scope"]), HeldEmployees: d["held_employees"]}
	h.HeldUsers, h.HeldUnnamed = parseHeldList(h.HeldEmployees)
	h.Unattributed, _ = strconv.Atoi(d["unattributed"]) // absent: none
	return h, nil
}

// attributable reads a vault_only certificate and returns it as a
// candidate when it is unmistakably one the users' role issued for a
// portal user and it is older than the grace; nil otherwise. The user is
// the one its CN names as Vault matches names, case-insensitively
// (userOfAddress), and every email SAN must name the same user. Never
// revoked automatically, whatever reconciliation says:
//   - a CA certificate (revoking one ends every certificate under it);
//   - a certificate for a server (serverAuth, e.g. Nginx's): the
//     protected site would go down;
//   - anything whose subject is not an address in the email domain, or
//     with more names than that (DNS, IP, URI SANs, an email in another
//     domain): another role or an operator issued it for something the
//     portal does not know;
//   - a certificate whose key usage is not exactly client authentication;
//   - one younger than the grace: its issuance may still be recording (on
//     this or another replica), or Vault answered a request the portal had
//     already given up on;
//   - one already revoked or expired.
//
// A certificate in the users' roles' shape (all of the above passed: a
// client certificate whose CN and email SANs are addresses in the email
// domain) whose names attribute it to no portal user — a local part that
// is no user name even folded, or names that fold to different users — is
// returned with user "": the job holds it (reconcileJob), never skips it
// silently and never revokes it.
func (s *Service) attributable(ctx context.Context, serial string, now time.Time, grace time.Duration) (*candidate, error) {
	av, err := s.auditorVault()
	if err != nil {
		return nil, err
	}
	cert, err := av.ReadCertificate(ctx, s.opts.PKIMount, serial)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, nil // tidied away since the list
	}
	if err != nil {
		return nil, vaultUnavailable(err)
	}
	if cert.IsCA || !cert.RevokedAt.IsZero() || !now.Before(cert.NotAfter) || isServerCertificate(cert.Certificate) {
		return nil, nil
	}
	if !cert.NotBefore.Before(now.Add(-grace)) {
		return nil, nil
	}
	cn := cert.Subject.CommonName
	if !inDomain(cn, s.opts.EmailDomain) || len(cert.DNSNames) > 0 || len(cert.IPAddresses) > 0 || len(cert.URIs) > 0 {
		return nil, nil
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(cert.UnknownExtKeyUsage) > 0 {
		return nil, nil
	}
	user := s.userOf(cn)
	for _, e := range cert.EmailAddresses {
		if !inDomain(e, s.opts.EmailDomain) {
			return nil, nil
		}
		if userOfAddress(e, s.opts.EmailDomain) != user {
			user = "" // names more than one user, or one and a stranger
		}
	}
	if user == "" {
		return &candidate{serial: serial, subject: cn, notBefore: cert.NotBefore, evidence: fmt.Sprintf(
			"in Vault mount %s, not in the inventory: a client certificate for %s, an address in %s that names no portal user, valid from %s, older than the %s grace",
			s.opts.PKIMount, cn, s.opts.EmailDomain, fmtTime(cert.NotBefore), grace)}, nil
	}
	return &candidate{serial: serial, user: user, subject: cn, notBefore: cert.NotBefore, evidence: fmt.Sprintf(
		"in Vault mount %s, not in the inventory: a client certificate for %s (user %s), valid from %s, older than the %s grace",
		s.opts.PKIMount, cn, user, fmtTime(cert.NotBefore), grace)}, nil
}

// autoRevoke revokes one candidate with the portal's identity, on the
// record, after checking once more that the inventory still does not know
// it (no issuance can record it this late: the grace outlasts them all).
func (s *Service) autoRevoke(ctx context.Context, c candidate, grace time.Duration) error {
	switch _, err := s.store.GetCertificate(ctx, c.serial); {
	case err == nil:
		return nil // recorded after all: not vault_only any more
	case !errors.Is(err, store.ErrNotFound):
		return storeUnavailable(err)
	}
	details := map[string]string{"reason": ReasonIssuedAroundPortal, "evidence": c.evidence, "subject": c.subject,
		"inventory": "none", "auto_revoke": "reconcile", "auto_revoke_after": grace.String()}
	if err := s.record(ctx, s.newEvent(ctx, ReconcileActor, c.user, audit.ActionRevoke, audit.OutcomeIntent, c.serial, details)); err != nil {
		return err
	}
	if err := s.service.Revoke(ctx, s.opts.PKIMount, c.serial); err != nil {
		if aerr := s.record(ctx, s.newEvent(ctx, ReconcileActor, c.user, audit.ActionRevoke, audit.OutcomeFailure, c.serial, details)); aerr != nil {
			s.log.ErrorContext(ctx, "audit write failed for a failed revocation", "serial", c.serial, "err", aerr)
		}
		return &Error{Code: EUnavailable, Message: "error.vault_unavailable_revoke", Err: err}
	}
	s.opts.Metrics.Revoked(ReasonIssuedAroundPortal)
	if err := s.record(ctx, s.newEvent(ctx, ReconcileActor, c.user, audit.ActionRevoke, audit.OutcomeSuccess, c.serial, details)); err != nil {
		// Revoked, with its intent on the record: the next run sees it
		// vault_only and revoked, and the log says what happened.
		s.log.ErrorContext(ctx, "certificate issued around the portal revoked but not recorded", "serial", c.serial, "err", err)
		return err
	}
	s.log.WarnContext(ctx, "revoked a certificate issued around the portal", "serial", c.serial, "subject", c.subject,
		"reason", ReasonIssuedAroundPortal, "evidence", c.evidence)
	return nil
}

// RunReconcile reconciles every interval until ctx ends, the first run one
// interval after start (as the offboarding sweep). interval <= 0 does
// nothing.
func (s *Service) RunReconcile(ctx context.Context, interval time.Duration) {
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
		res, err := s.ReconcileJob(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.ErrorContext(ctx, "background reconciliation failed", "err", err)
		case res != nil && res.Revoked > 0:
			s.log.InfoContext(ctx, "background reconciliation revoked certificates issued around the portal", "revoked", res.Revoked)
		}
	}
}
