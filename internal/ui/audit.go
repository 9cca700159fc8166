package ui

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/session"
	"github.com/certportal/certportal/internal/store"
)

// auditForm is the filter as typed, for redisplay.
type auditForm struct {
	Actor, Subject, Action, Outcome, Serial, From, To string
}

var (
	auditActions = []string{audit.ActionLogin, audit.ActionLogout, audit.ActionIssue, audit.ActionIssueOnBehalf, audit.ActionDownload, audit.ActionRevoke,
		audit.ActionReissue, audit.ActionAccessDenied, audit.ActionPortalStart, audit.ActionConfigSetup, audit.ActionAuditExport, audit.ActionReconcile,
		audit.ActionSessionEnded, audit.ActionSessionRoles, audit.ActionStepUp,
		audit.ActionLoginMFARequired, audit.ActionLoginMFAFailure, audit.ActionMFAEnrolLink, audit.ActionMFAReset, audit.ActionMFAEnrol,
		audit.ActionNotify, audit.ActionOffboardSweep, audit.ActionOffboardHeld, audit.ActionOffboardConfirm, audit.ActionOffboardResumed, audit.ActionSecretIDRotate, audit.ActionReconcileHeld, audit.ActionReconcileResumed}
	auditOutcomes = []string{audit.OutcomeSuccess, audit.OutcomeFailure, audit.OutcomeDenied, audit.OutcomeIntent, audit.OutcomeNotDelivered}
)

// parseAuditFilter reads the filter from the query string and refuses
// malformed values with the field named.
func parseAuditFilter(q url.Values) (store.AuditFilter, auditForm, url.Values, error) {
	form := auditForm{Actor: q.Get("actor"), Subject: q.Get("subject"), Action: q.Get("action"), Outcome: q.Get("outcome"),
		Serial: q.Get("serial"), From: q.Get("from"), To: q.Get("to")}
	f := store.AuditFilter{Actor: form.Actor, Subject: form.Subject, Action: form.Action, Outcome: form.Outcome}
	bad := func(field string) error { return portal.Invalid(field, "error.filter_invalid") }
	for name, v := range map[string]string{"actor": form.Actor, "subject": form.Subject} {
		if err := portal.CheckText(name, v, portal.MaxFilterLen); err != nil {
			return f, form, nil, err
		}
	}
	if form.Action != "" && !contains(auditActions, form.Action) {
		return f, form, nil, bad("action")
	}
	if form.Outcome != "" && !contains(auditOutcomes, form.Outcome) {
		return f, form, nil, bad("outcome")
	}
	if form.Serial != "" {
		s, err := portal.NormalizeSerial(form.Serial)
		if err != nil {
			return f, form, nil, bad("serial")
		}
		f.Serial = s
	}
	if form.From != "" {
		t, err := time.Parse("2006-01-02", form.From)
		if err != nil {
			return f, form, nil, bad("from")
		}
		f.From = t
	}
	if form.To != "" {
		t, err := time.Parse("2006-01-02", form.To)
		if err != nil {
			return f, form, nil, bad("to")
		}
		f.To = t.Add(24 * time.Hour) // inclusive day
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, form, nil, portal.Invalid("from", "error.from_after_to")
	}
	for name, dst := range map[string]*int64{"before": &f.BeforeID, "after": &f.AfterID} {
		if b := q.Get(name); b != "" {
			n, err := strconv.ParseInt(b, 10, 64)
			if err != nil || n < 1 {
				return f, form, nil, bad("page")
			}
			*dst = n
		}
	}
	if f.BeforeID > 0 && f.AfterID > 0 {
		return f, form, nil, bad("page")
	}
	// The filter without paging, for export links and the next page.
	keep := url.Values{}
	for k, v := range map[string]string{"actor": form.Actor, "subject": form.Subject, "action": form.Action,
		"outcome": form.Outcome, "serial": form.Serial, "from": form.From, "to": form.To} {
		if v != "" {
			keep.Set(k, v)
		}
	}
	return f, form, keep, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "audit.title")
	p.Actions, p.Outcomes = auditActions, auditOutcomes
	days, err := s.Service.AuditDaily(r.Context(), p.User, 30)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Chart, p.ChartMax = activityChart(days, p.Lang)
	f, form, keep, err := parseAuditFilter(r.URL.Query())
	p.Filter = form
	if err != nil {
		var pe *portal.Error
		errors.As(err, &pe)
		p.Error, p.Field = pe.Message, pe.Field
		s.render(w, r, http.StatusBadRequest, "audit", p)
		return
	}
	p.FilterQuery = template.URL(keep.Encode())
	events, paging, err := s.Service.AuditPage(r.Context(), p.User, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Events, p.Paging = events, paging
	s.render(w, r, http.StatusOK, "audit", p)
}

// detail is one key–value pair of an event's details, for display.
type detail struct {
	Key   string
	Label string // catalog text for known keys; empty: show Key as it is
	Value string // as the reader reads it
	Raw   string // the value as recorded, when Value shows it otherwise
}

// eventDetails turns an event's details (a JSON object of strings) into
// sorted key–value pairs an auditor can read; anything that is not such an
// object is shown whole, as one value. Known values are shown in the
// reader's language (detailValue); the trail and its exports keep what was
// recorded, and the page keeps it in Raw.
func eventDetails(l i18n.Lang, raw string) []detail {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		if raw == "" || raw == "{}" {
			return nil
		}
		return []detail{{Value: raw}}
	}
	out := make([]detail, 0, len(m))
	for k, v := range m {
		val, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			val = string(b)
		}
		if val == "" {
			continue // an empty field says nothing
		}
		d := detail{Key: k, Value: val}
		if key := "detail." + k; i18n.Has(i18n.English, key) {
			d.Label = i18n.T(l, key)
		}
		if shown := detailValue(l, k, val); shown != val {
			d.Value, d.Raw = shown, val
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// detailTexts are the fixed values the portal writes into details, in
// English or as a code, by "key=value", with their catalog text.
var detailTexts = map[string]string{
	"note=further refusals of this user in the window after the first, recorded once": "detailtext.denied_counted",
	"reason=malformed":                                        "detailtext.login_malformed",
	"reason=invalid credentials":                              "detailtext.invalid_credentials",
	"reason=no answer from vault (counted)":                   "detailtext.no_answer_counted",
	"reason=no portal policy":                                 "detailtext.no_portal_policy",
	"reason=" + portal.EndNoPolicy:                            "detailtext.no_portal_policy_left",
	"reason=code missing":                                     "detailtext.code_missing",
	"reason=malformed code":                                   "detailtext.malformed_code",
	"reason=code not accepted":                                "detailtext.code_not_accepted",
	"reason=not enrolled":                                     "detailtext.not_enrolled",
	"reason=pending login expired":                            "detailtext.pending_expired",
	"reason=pending login unknown to vault":                   "detailtext.pending_unknown",
	"reason=the portal's identity cannot read userpass users": "detailtext.cannot_read_users",
	"reason=no such userpass user":                            "detailtext.no_such_user",
	"reason=" + portal.ReasonExtraPolicies:                    "detailtext.extra_policies",
	"reason=link unknown, used, expired or another user's":    "detailtext.link_invalid",
	"reason=already enrolled; link spent":                     "detailtext.link_spent",
	"reason=too many failed logins from this address or network; further attempts in this window are refused unrecorded": "detailtext.address_throttled",
	"reason=" + session.EndIdle:                                        "detailtext.end_idle",
	"reason=" + session.EndAbsolute:                                    "detailtext.end_absolute",
	"reason=" + session.EndReplaced:                                    "detailtext.end_replaced",
	"reason=" + session.EndShutdown:                                    "detailtext.end_shutdown",
	"reason=" + portal.EndTokenInvalid:                                 "detailtext.end_token_invalid",
	"reason=the client closed the connection before the file was sent": "detailtext.client_closed",
	"reason=the page with the file could not be made":                  "detailtext.page_failed",
	"reason=" + portal.ReasonIssuedAroundPortal:                        "detailtext.issued_around_portal",
	"reason=" + portal.ReasonPortalStaff:                               "detailtext.portal_staff",
	"reason=" + portal.ReasonEntityDisabled:                            "detailtext.entity_disabled",
	"reason=" + portal.ReasonOwnFactor:                                 "detailtext.own_factor",
	"reason=" + portal.ReasonStaffFactor:                               "detailtext.staff_factor",
	"token=revoked":                                                    "detailtext.token_revoked",
	"token=already invalid":                                            "detailtext.token_was_invalid",
	"token=not revoked: vault unavailable":                             "detailtext.token_kept",
	"via=first login (trust on first use)":                             "detailtext.first_login",
	"inventory=none":                                                   "detailtext.inventory_none",
	"auto_revoke=reconcile":                                            "detailtext.auto_revoke_reconcile",
	"offboard=sweep":                                                   "detailtext.offboard_sweep",
	"offboard=confirmed":                                               "detailtext.offboard_confirmed",
	"device=known":                                                     "detailtext.device_known",
	"scope=employees":                                                  "detailtext.scope_employees",
	"scope=unattributed":                                               "detailtext.scope_unattributed",
	"scope=employees+unattributed":                                     "detailtext.scope_both",
	"scope=all":                                                        "detailtext.scope_all",
	"old_expires=unknown to Vault":                                     "detailtext.unknown_to_vault",
	"old_expires=never":                                                "detailtext.never",
	"new_expires=never":                                                "detailtext.never",
	"threshold=expired":                                                "detailtext.threshold_expired",
	"threshold=offboard-held":                                          "detailtext.threshold_offboard_held",
	"key_origin=vault":                                                 "detailtext.key_origin_vault",
	"key_origin=device":                                                "detailtext.key_origin_device",
	"method=totp":                                                      "detailtext.method_totp",
	"mfa=totp":                                                         "detailtext.method_totp",
	"mfa=password":                                                     "detailtext.mfa_password",
	"notify=on":                                                        "detailtext.on",
	"notify=off":                                                       "detailtext.off",
	"notify_quiet_hours=off":                                           "detailtext.off",
}

// clientText are the details whose value someone outside the portal chose
// (a label, a ticket, a path, a certificate's subject, the page a step-up
// was for, an export's filter, a mail or webhook server's error, a host
// name): shown exactly as recorded, never read as a time, a duration or a
// fixed text, so a label "true" or "2160h0m0s" is not passed off as the
// portal's own words.
var clientText = map[string]bool{
	"label": true, "ticket": true, "last_path": true, "path": true, "subject": true, "evidence": true,
	"for": true, "filter": true, "error": true, "host": true,
}

// detailPrefixes are fixed texts with a variable end (a time, an error),
// shown as their catalog text with the end in place of its %s.
var detailPrefixes = []struct{ key, prefix, text string }{
	{"reason", "too many failed logins for this username; further attempts are refused unrecorded until ", "detailtext.user_throttled_until"},
	{"reason", "the connection broke before the client received the whole ", "detailtext.connection_broke"},
}

// goDuration is a Go duration as time.Duration.String writes it.
var goDuration = regexp.MustCompile(`^([0-9]+h)?([0-9]+m)?([0-9]+(\.[0-9]+)?s)?$`)

// detailValue is val as an auditor reads it in l: a revocation reason
// through the "reason.*" catalog, a fixed text through detailTexts, an
// RFC 3339 time as the page's other times, a Go duration (or a list of
// them) in days, hours, minutes and seconds, true and false as yes and no.
// Anything else is val itself.
func detailValue(l i18n.Lang, key, val string) string {
	if clientText[key] {
		return val
	}
	if key == "reason" && i18n.Has(i18n.English, "reason."+val) {
		return i18n.T(l, "reason."+val)
	}
	if k, ok := detailTexts[key+"="+val]; ok {
		return i18n.T(l, k)
	}
	if key == "roles" || key == "was" {
		return roleList(l, val)
	}
	if key == "changed" {
		return setupChanges(l, val)
	}
	for _, p := range detailPrefixes {
		if key == p.key && strings.HasPrefix(val, p.prefix) && len(val) > len(p.prefix) {
			return i18n.T(l, p.text, detailValue(l, "", val[len(p.prefix):]))
		}
	}
	switch val {
	case "true", "false":
		return i18n.T(l, "detailtext."+val)
	}
	if t, err := time.Parse(time.RFC3339, val); err == nil {
		return auditTime(t)
	}
	if d, ok := durationText(l, val); ok {
		return d
	}
	// A list of durations: fmt.Sprint of a slice ("[24h0m0s 720h0m0s]"),
	// or joined with commas.
	list := strings.Fields(strings.Trim(val, "[]"))
	if !strings.HasPrefix(val, "[") {
		list = strings.Split(val, ",")
	}
	if len(list) > 1 {
		shown := make([]string, len(list))
		for i, v := range list {
			d, ok := durationText(l, v)
			if !ok {
				return val
			}
			shown[i] = d
		}
		return strings.Join(shown, ", ")
	}
	return val
}

// roleList reads a comma-joined list of portal roles (a login's, a
// session's before and after) as words of l; val itself when one of them is
// not a role the portal knows.
func roleList(l i18n.Lang, val string) string {
	if val == "" {
		return val
	}
	names := strings.Split(val, ",")
	for i, n := range names {
		key := "detailtext.role_" + n
		if !i18n.Has(i18n.English, key) {
			return val
		}
		names[i] = i18n.T(l, key)
	}
	return strings.Join(names, ", ")
}

// setupChanges reads the "; "-joined steps a setup run changed (its
// "changed" detail, written with the English "setupstep.*" messages) in l,
// each step by the message it was written with; a step no message matches
// (an older wording) stays as recorded.
func setupChanges(l i18n.Lang, val string) string {
	steps := strings.Split(val, "; ")
	for i, step := range steps {
		steps[i] = setupStep(l, step)
	}
	return strings.Join(steps, "; ")
}

func setupStep(l i18n.Lang, step string) string {
	if text, ok := i18n.ReadBack(l, "setupstep.", step, func(arg string) any {
		if d, ok := durationText(l, arg); ok {
			return d
		}
		return arg
	}); ok {
		return text
	}
	return step
}

// auditTime is an event's time as the audit page shows it (the datetime
// template function).
func auditTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// durationText reads a Go duration string as days, hours, minutes and
// seconds ("1 day 12 hours", "90일"); false when v is not one, or is finer
// than a second.
func durationText(l i18n.Lang, v string) (string, bool) {
	if v == "" || !goDuration.MatchString(v) {
		return "", false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d%time.Second != 0 {
		return "", false
	}
	if d == 0 {
		return i18n.T(l, "duration.seconds", 0), true
	}
	units := []struct {
		size       time.Duration
		one, other string
	}{
		{24 * time.Hour, "ttl.day", "ttl.days"},
		{time.Hour, "duration.hour", "ttl.hours"},
		{time.Minute, "duration.minute", "duration.minutes"},
		{time.Second, "duration.second", "duration.seconds"},
	}
	var parts []string
	for _, u := range units {
		n := int(d / u.size)
		d -= time.Duration(n) * u.size
		switch {
		case n == 1:
			parts = append(parts, i18n.T(l, u.one))
		case n > 1:
			parts = append(parts, i18n.T(l, u.other, n))
		}
	}
	return strings.Join(parts, " "), true
}

// csvSafe defuses spreadsheet formulas: a user agent or username is chosen by
// whoever sends the request, and must not run when an auditor opens the file.
// Invisible characters are escaped as on the pages (rows recorded before
// values were escaped at record time may hold them raw).
func csvSafe(v string) string {
	v = audit.Clean(v, -1)
	if v != "" && strings.ContainsAny(v[:1], "=+-@\t\r") {
		return "'" + v
	}
	return v
}

// auditExport streams the filtered trail as CSV or JSON Lines, flushing as it
// goes so memory stays flat whatever the size.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format != "csv" && format != "jsonl" {
		s.failStatus(w, r, http.StatusBadRequest, "error.filter_invalid")
		return
	}
	f, _, _, err := parseAuditFilter(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	name := "certportal-audit-" + time.Now().UTC().Format("20060102T150405Z") + "." + format
	started := false
	start := func() {
		if started {
			return
		}
		started = true
		h := w.Header()
		if format == "csv" {
			h.Set("Content-Type", "text/csv; charset=utf-8")
		} else {
			h.Set("Content-Type", "application/x-ndjson")
		}
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}
	header := []string{"id", "time", "actor", "subject", "action", "outcome", "client_ip", "user_agent", "request_id", "serial", "details", "prev_hash", "hash"}
	cw := csv.NewWriter(w)
	enc := json.NewEncoder(w)
	n := 0
	err = s.Service.AuditExport(r.Context(), identityFrom(r.Context()), f, format, func(e *audit.Event) error {
		if !started {
			start()
			if format == "csv" {
				if err := cw.Write(header); err != nil {
					return err
				}
			}
		}
		var err error
		if format == "csv" {
			err = cw.Write([]string{strconv.FormatInt(e.ID, 10), e.Time.Format(time.RFC3339Nano), csvSafe(e.Actor), csvSafe(e.Subject),
				e.Action, e.Outcome, csvSafe(e.ClientIP), csvSafe(e.UserAgent), e.RequestID, e.Serial, csvSafe(e.Details), e.PrevHash, e.Hash})
		} else {
			err = enc.Encode(exportEvent(e))
		}
		n++
		if n%500 == 0 {
			cw.Flush()
			_ = rc.Flush()
		}
		return err
	})
	if err != nil && !started {
		s.fail(w, r, err)
		return
	}
	if !started {
		start()
		if format == "csv" {
			_ = cw.Write(header)
		}
	}
	cw.Flush()
	if err != nil {
		// Headers are gone; cut the stream so the client sees it incomplete.
		s.Logger.ErrorContext(r.Context(), "audit export interrupted", "rows", n, "err", err)
		panic(http.ErrAbortHandler)
	}
}

type jsonEvent struct {
	ID        int64           `json:"id"`
	Time      time.Time       `json:"time"`
	Actor     string          `json:"actor"`
	Subject   string          `json:"subject"`
	Action    string          `json:"action"`
	Outcome   string          `json:"outcome"`
	ClientIP  string          `json:"client_ip"`
	UserAgent string          `json:"user_agent"`
	RequestID string          `json:"request_id"`
	Serial    string          `json:"serial"`
	Details   json.RawMessage `json:"details"`
	PrevHash  string          `json:"prev_hash"`
	Hash      string          `json:"hash"`
}

func exportEvent(e *audit.Event) jsonEvent {
	d := json.RawMessage(e.Details)
	if !json.Valid(d) {
		d, _ = json.Marshal(e.Details)
	}
	return jsonEvent{e.ID, e.Time, e.Actor, e.Subject, e.Action, e.Outcome, e.ClientIP, e.UserAgent, e.RequestID, e.Serial, d, e.PrevHash, e.Hash}
}

func (s *Server) auditInventory(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "audit.inventory")
	after := r.URL.Query().Get("users_after")
	if len(after) > 64 {
		s.failStatus(w, r, http.StatusBadRequest, "error.filter_invalid")
		return
	}
	rep, err := s.Service.Inventory(r.Context(), p.User, after)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Report = rep
	p.States = store.InventoryStates
	s.render(w, r, http.StatusOK, "audit_inventory", p)
}

// inventoryForm is the drill-down's filter as typed, for links.
type inventoryForm struct {
	State, User string
	At          int64 // the report's moment, unix seconds
}

// Query is the filter encoded for links (without paging).
func (f inventoryForm) Query() template.URL {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.User != "" {
		q.Set("user", f.User)
	}
	q.Set("at", strconv.FormatInt(f.At, 10))
	return template.URL(q.Encode())
}

var inventoryUserPattern = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

// parseInventoryFilter reads the drill-down filter: a state the report
// counts, a user, the report's moment (so pages match the count they came
// from) and the serial a page starts after.
func (s *Server) parseInventoryFilter(q url.Values) (store.InventoryFilter, inventoryForm, error) {
	form := inventoryForm{State: q.Get("state"), User: q.Get("user")}
	f := store.InventoryFilter{State: form.State, Username: form.User}
	if form.State != "" && !contains(store.InventoryStates, form.State) {
		return f, form, portal.Invalid("state", "error.filter_invalid")
	}
	if form.User != "" && !inventoryUserPattern.MatchString(form.User) {
		return f, form, portal.Invalid("user", "error.filter_invalid")
	}
	f.At = s.Service.Now()
	if a := q.Get("at"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 1 {
			return f, form, portal.Invalid("at", "error.filter_invalid")
		}
		f.At = time.Unix(n, 0)
	}
	form.At = f.At.Unix()
	if a := q.Get("after"); a != "" {
		serial, err := portal.NormalizeSerial(a)
		if err != nil {
			return f, form, portal.Invalid("page", "error.filter_invalid")
		}
		f.AfterSerial = serial
	}
	return f, form, nil
}

// auditInventoryCertificates lists the certificates behind one count of
// the inventory report, a page at a time.
func (s *Server) auditInventoryCertificates(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "audit.inventory_certs")
	p.Back = "/audit/inventory"
	f, form, err := s.parseInventoryFilter(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	certs, next, err := s.Service.InventoryCertificates(r.Context(), p.User, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Certs, p.InvFilter, p.InvNext, p.InvAt = certs, form, next, f.At
	s.render(w, r, http.StatusOK, "audit_inventory_certs", p)
}

// auditInventoryExport streams the certificates behind a count as CSV,
// flushing as it goes so memory stays flat whatever the inventory's size.
func (s *Server) auditInventoryExport(w http.ResponseWriter, r *http.Request) {
	f, _, err := s.parseInventoryFilter(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	header := []string{"serial", "username", "subject", "label", "status", "key_type", "encryption", "issued_by", "issued_at", "not_after", "revoked_at", "revoke_reason", "revoked_by", "ticket", "key_origin"}
	started, n := false, 0
	start := func() {
		started = true
		h := w.Header()
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="certportal-inventory-`+f.At.UTC().Format("20060102T150405Z")+`.csv"`)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_ = cw.Write(header)
	}
	err = s.Service.InventoryExport(r.Context(), identityFrom(r.Context()), f, func(c portal.CertificateView) error {
		if !started {
			start()
		}
		revoked := ""
		if c.Revoked() {
			revoked = c.RevokedAt.UTC().Format(time.RFC3339)
		}
		n++
		if err := cw.Write([]string{c.Serial, csvSafe(c.Username), csvSafe(c.Subject), csvSafe(c.Label), string(c.Status), c.KeyType, c.Encryption,
			csvSafe(c.IssuedBy), c.IssuedAt.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), revoked,
			c.RevokeReason, csvSafe(c.RevokedBy), csvSafe(c.Ticket), c.KeyOrigin}); err != nil {
			return err
		}
		if n%500 == 0 {
			cw.Flush()
			_ = rc.Flush()
		}
		return nil
	})
	if err != nil && !started {
		s.fail(w, r, err)
		return
	}
	if !started {
		start()
	}
	cw.Flush()
	if err != nil {
		s.Logger.ErrorContext(r.Context(), "inventory export interrupted", "rows", n, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// reconcileShown bounds each group on the HTML page; the JSON form always
// carries every entry.
const reconcileShown = 1000

// reconcilePage entries are read from the store at a time for the JSON form.
const reconcilePage = 1000

// reconcileGroupIDs: the HTML table id and the catalog keys of each group.
var reconcileGroupIDs = []struct{ group, id, title, hint string }{
	{store.ReconcileVaultOnly, "vault-only", "audit.vault_only", "audit.vault_only_hint"},
	{store.ReconcileStateMismatch, "state-mismatch", "audit.state_mismatch", "audit.state_mismatch_hint"},
	{store.ReconcileInventoryOnly, "inventory-only", "audit.inventory_only", "audit.inventory_only_hint"},
	{store.ReconcileKnown, "known", "audit.known", "audit.known_hint"},
}

// auditReconcile shows the last finished reconciliation at once (and
// whether a newer one is running), or with ?format=json streams it for
// scripts: {"hold": {...} or null, "vault_only": [...], "inventory_only": [...],
// "state_mismatch": [...], "known": [...], "expired_tidied": N}, each
// entry {serial, subject, not_after (RFC 3339), revoked}; hold is the
// hold of automatic revocation in force, as the page's notice shows it
// (jsonReconcileHold); expired_tidied
// counts the expired inventory rows Vault no longer holds, which are not
// listed (0 before the first run). The run it comes from
// is in the headers: X-Reconcile-Run (id, 0 before the first),
// X-Reconcile-Finished (RFC 3339) and X-Reconcile-State of the newest run
// (running, done, failed). POST /audit/reconcile starts a new run.
func (s *Server) auditReconcile(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "html" {
		s.failStatus(w, r, http.StatusBadRequest, "error.filter_invalid")
		return
	}
	p := s.newPage(r, "audit.reconcile")
	st, err := s.Service.ReconcileStatus(r.Context(), p.User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	if st.LastDone != nil {
		h.Set("X-Reconcile-Run", strconv.FormatInt(st.LastDone.ID, 10))
		h.Set("X-Reconcile-Finished", st.LastDone.FinishedAt.UTC().Format(time.RFC3339Nano))
	} else {
		h.Set("X-Reconcile-Run", "0")
	}
	// running also while the reconciliation's lock is held after the
	// newest run's row says done (the run, or the scheduled job's
	// revocations, finishing) or before an accepted start has begun: a
	// start is refused (409) until the state is no longer running.
	state := ""
	if st.Latest != nil {
		state = st.Latest.State
	}
	if st.Active {
		state = store.RunRunning
	}
	if state != "" {
		h.Set("X-Reconcile-State", state)
	}
	// A hold stands until a run records reconcile.resumed: the vault_only
	// rows it holds are not revoked automatically, whatever the grace
	// says, and the page and its JSON form must say so.
	hold, err := s.Service.ReconcileHold(r.Context(), p.User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if format == "json" {
		s.reconcileJSON(w, r, p.User, st.LastDone, hold)
		return
	}
	p.ReconcileStatus = st
	if p.ReconcileHold = hold; hold != nil {
		p.ReconcileHoldTrail = holdTrail(hold)
	}
	for _, g := range reconcileGroupIDs {
		rg := reconcileGroup{ID: g.id, Title: g.title, Hint: g.hint, RevokeLinks: g.group == store.ReconcileVaultOnly, Mismatch: g.group == store.ReconcileStateMismatch}
		if run := st.LastDone; run != nil {
			rg.Total = map[string]int{store.ReconcileVaultOnly: run.VaultOnly, store.ReconcileStateMismatch: run.StateMismatch,
				store.ReconcileInventoryOnly: run.InventoryOnly, store.ReconcileKnown: run.Known}[g.group]
			if rg.Entries, err = s.Service.ReconcileEntries(r.Context(), p.User, run.ID, g.group, "", reconcileShown); err != nil {
				s.fail(w, r, err)
				return
			}
			rg.Hidden = max(0, rg.Total-len(rg.Entries))
			if g.group == store.ReconcileInventoryOnly {
				rg.ShowTidied, rg.Tidied = true, run.ExpiredTidied
			}
		}
		p.ReconcileGroups = append(p.ReconcileGroups, rg)
	}
	s.render(w, r, http.StatusOK, "audit_reconcile", p)
}

// holdTrail is the trail page that opens with h's event: it pages newest
// first from before (exclusive).
func holdTrail(h *portal.ReconcileHold) string {
	return "/audit?" + url.Values{"action": {audit.ActionReconcileHeld}, "before": {strconv.FormatInt(h.EventID+1, 10)}}.Encode()
}

// auditReconcileStart starts a reconciliation in the background and goes
// back to the page, which shows its progress.
func (s *Server) auditReconcileStart(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "audit.reconcile")
	// One already asked for or running is refused (409, error.reconcile_busy).
	if err := s.Service.RequestReconcile(r.Context(), p.User); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/audit/reconcile", http.StatusSeeOther)
}

// reconcileGroup is one table of the reconciliation page.
type reconcileGroup struct {
	ID, Title, Hint string
	Entries         []portal.ReconcileEntry
	Total, Hidden   int
	// Tidied (shown with inventory_only): the inventory rows Vault does
	// not hold that had expired, counted but not listed.
	ShowTidied  bool
	Tidied      int
	RevokeLinks bool // rows link to the helpdesk page that revokes them
	Mismatch    bool // rows say which side holds which state
}

type jsonReconcileEntry struct {
	Serial   string `json:"serial"`
	Subject  string `json:"subject"`
	NotAfter string `json:"not_after"`
	Revoked  bool   `json:"revoked"`
}

// jsonReconcileHold is the hold in force in the JSON form: the facts of
// the page's notice (portal.ReconcileHold), null when none is.
type jsonReconcileHold struct {
	Scope   string `json:"scope"` // all, employees, unattributed, employees+unattributed
	Since   string `json:"since"` // RFC 3339
	EventID int64  `json:"event_id"`
	Trail   string `json:"trail"` // the trail page that opens with the event
	// Employees: the held employees the event names (at most 20), each with
	// how many of their certificates it holds; EmployeesUnnamed: how many
	// more it does not name.
	Employees        []jsonHeldEmployee `json:"employees"`
	EmployeesUnnamed int                `json:"employees_unnamed"`
	Unattributed     int                `json:"unattributed"` // held certificates that name no employee
}

type jsonHeldEmployee struct {
	Username     string `json:"username"`
	Certificates int    `json:"certificates"`
}

func newJSONReconcileHold(h *portal.ReconcileHold) *jsonReconcileHold {
	if h == nil {
		return nil
	}
	j := &jsonReconcileHold{Scope: h.Scope, Since: h.Since.UTC().Format(time.RFC3339), EventID: h.EventID, Trail: holdTrail(h),
		Employees: make([]jsonHeldEmployee, len(h.HeldUsers)), EmployeesUnnamed: h.HeldUnnamed, Unattributed: h.Unattributed}
	for i, u := range h.HeldUsers {
		j.Employees[i] = jsonHeldEmployee{Username: u.Username, Certificates: u.Certificates}
	}
	return j
}

// reconcileJSON streams the hold in force (null for none), the four lists
// of run and its expired_tidied count (empty lists and 0 before the first
// run) from the store, a page at a time, so memory stays flat however long
// they are.
func (s *Server) reconcileJSON(w http.ResponseWriter, r *http.Request, user *portal.Identity, run *store.ReconcileRun, hold *portal.ReconcileHold) {
	holdJSON, err := json.Marshal(newJSONReconcileHold(hold))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	groups := []string{store.ReconcileVaultOnly, store.ReconcileInventoryOnly, store.ReconcileStateMismatch, store.ReconcileKnown}
	bw := bufio.NewWriterSize(w, 64<<10)
	// The status line goes out with the first entry (or the end), so a
	// store that fails at once still gets a clean error page.
	started := false
	begin := func() {
		if !started {
			w.WriteHeader(http.StatusOK)
			bw.WriteString("{\n\"hold\":")
			bw.Write(holdJSON)
			bw.WriteString(",")
			started = true
		}
	}
	err = func() error {
		for i, g := range groups {
			n := 0
			open := func() {
				begin()
				if i > 0 {
					bw.WriteString(",")
				}
				bw.WriteString("\n" + strconv.Quote(g) + ":[")
			}
			for after := ""; run != nil; {
				page, err := s.Service.ReconcileEntries(r.Context(), user, run.ID, g, after, reconcilePage)
				if err != nil {
					return err
				}
				for _, e := range page {
					if n == 0 {
						open()
					} else {
						bw.WriteString(",")
					}
					n++
					b, err := json.Marshal(jsonReconcileEntry{Serial: e.Serial, Subject: e.Subject, NotAfter: e.NotAfter.UTC().Format(time.RFC3339), Revoked: e.Revoked})
					if err != nil {
						return err
					}
					bw.WriteString("\n")
					if _, err := bw.Write(b); err != nil {
						return err
					}
				}
				if len(page) < reconcilePage {
					break
				}
				after = page[len(page)-1].Serial
			}
			if n == 0 {
				open()
			}
			bw.WriteString("]")
		}
		tidied := 0
		if run != nil {
			tidied = run.ExpiredTidied
		}
		bw.WriteString(",\n\"expired_tidied\":" + strconv.Itoa(tidied) + "\n}\n")
		return bw.Flush()
	}()
	if err != nil {
		if !started {
			s.fail(w, r, err)
			return
		}
		// Headers are gone; cut the stream so the client sees it incomplete.
		s.Logger.ErrorContext(r.Context(), "reconcile json interrupted", "err", err)
		panic(http.ErrAbortHandler)
	}
}
