package ui

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store"
)

// auditForm is the filter as typed, for redisplay.
type auditForm struct {
	Actor, Subject, Action, Outcome, Serial, From, To string
}

var (
	auditActions = []string{audit.ActionLogin, audit.ActionLogout, audit.ActionIssue, audit.ActionIssueOnBehalf, audit.ActionDownload, audit.ActionRevoke,
		audit.ActionReissue, audit.ActionAccessDenied, audit.ActionPortalStart, audit.ActionConfigSetup, audit.ActionAuditExport, audit.ActionReconcile}
	auditOutcomes = []string{audit.OutcomeSuccess, audit.OutcomeFailure, audit.OutcomeDenied}
)

// parseAuditFilter reads the filter from the query string and refuses
// malformed values with the field named.
func parseAuditFilter(q url.Values) (store.AuditFilter, auditForm, url.Values, error) {
	form := auditForm{Actor: q.Get("actor"), Subject: q.Get("subject"), Action: q.Get("action"), Outcome: q.Get("outcome"),
		Serial: q.Get("serial"), From: q.Get("from"), To: q.Get("to")}
	f := store.AuditFilter{Actor: form.Actor, Subject: form.Subject, Action: form.Action, Outcome: form.Outcome}
	bad := func(field string) error { return portal.Invalid(field, "error.filter_invalid") }
	for name, v := range map[string]string{"actor": form.Actor, "subject": form.Subject} {
		if len(v) > 128 || strings.ContainsAny(v, "\x00\r\n") {
			return f, form, nil, bad(name)
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
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return f, form, nil, bad("before")
		}
		f.BeforeID = n
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
	p.Chart = activityChart(days)
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
	events, next, err := s.Service.AuditPage(r.Context(), p.User, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Events, p.NextBefore = events, next
	s.render(w, r, http.StatusOK, "audit", p)
}

// csvSafe defuses spreadsheet formulas: a user agent or username is chosen by
// whoever sends the request, and must not run when an auditor opens the file.
func csvSafe(v string) string {
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
	rep, err := s.Service.Inventory(r.Context(), p.User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Report = rep
	s.render(w, r, http.StatusOK, "audit_inventory", p)
}

func (s *Server) auditReconcile(w http.ResponseWriter, r *http.Request) {
	p := s.newPage(r, "audit.reconcile")
	rec, err := s.Service.Reconcile(r.Context(), p.User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Reconcile = rec
	s.render(w, r, http.StatusOK, "audit_reconcile", p)
}
