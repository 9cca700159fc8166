package portal

import (
	"context"
	"encoding/json"
	"time"

	"github.com/certportal/certportal/internal/audit"
)

// RequestInfo is where a request came from, for the audit trail.
type RequestInfo struct {
	ClientIP  string
	UserAgent string
	RequestID string
}

type requestInfoKey struct{}

// WithRequestInfo attaches ri to ctx; the web layer does this for every request.
func WithRequestInfo(ctx context.Context, ri RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

// RequestInfoFrom is what WithRequestInfo attached to ctx (zero when nothing was).
func RequestInfoFrom(ctx context.Context) RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(RequestInfo)
	return ri
}

// newEvent builds an event from the request. details must never hold a
// secret: callers pass only names, serials, choices and counts.
//
// Every text value is bounded and escaped here, the one place events are
// made: a path, a user agent or a ticket is chosen by whoever sends the
// request, and must neither grow the trail without bound nor carry bidi or
// control characters to the pages and files auditors read (audit.Clean).
// Details are escaped and cut value by value, then encoded
// (audit.EncodeDetails), so that they decode to text without such
// characters too.
func (s *Service) newEvent(ctx context.Context, actor, subject, action, outcome, serial string, details map[string]string) *audit.Event {
	ri := RequestInfoFrom(ctx)
	d := audit.EncodeDetails(details, audit.MaxField)
	clean := func(v string) string { return audit.Clean(v, audit.MaxField) }
	return &audit.Event{
		Time: s.now().UTC(), Actor: clean(actor), Subject: clean(subject), Action: action, Outcome: outcome,
		ClientIP: clean(ri.ClientIP), UserAgent: clean(ri.UserAgent), RequestID: clean(ri.RequestID), Serial: clean(serial), Details: d,
	}
}

// record appends an event; its error means the action must fail (fail closed).
func (s *Service) record(ctx context.Context, e *audit.Event) error {
	if err := s.store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.opts.Metrics.AuditFailure()
		return &Error{Code: EUnavailable, Message: "error.audit_unavailable", Err: err}
	}
	return nil
}

// RecordDownload records what became of a .p12 the web layer tried to
// hand over: delivered (notDelivered == ""), or not, and why, with the
// bytes that left the portal. The file is gone either way, so a failure
// here is logged, not fatal; the issuance itself was recorded before the
// download began, and stays.
func (s *Service) RecordDownload(ctx context.Context, actor *Identity, dl *Download, sent int, notDelivered string) {
	outcome, details := audit.OutcomeSuccess, map[string]string{"bytes": itoa(len(dl.Data))}
	if notDelivered != "" {
		outcome, details["sent_bytes"], details["reason"] = audit.OutcomeNotDelivered, itoa(sent), notDelivered
		s.log.WarnContext(ctx, "certificate issued but its .p12 not delivered", "serial", dl.Serial, "user", dl.Username,
			"sent_bytes", sent, "bytes", len(dl.Data), "reason", notDelivered)
	}
	e := s.newEvent(ctx, actor.Username, dl.Username, audit.ActionDownload, outcome, dl.Serial, details)
	// The download is over; the event may share a commit with the next
	// write instead of costing an fsync of its own.
	if err := s.store.AppendAuditDeferred(context.WithoutCancel(ctx), e); err != nil {
		s.opts.Metrics.AuditFailure()
		s.log.ErrorContext(ctx, "audit write failed for a download", "serial", dl.Serial, "err", err)
	}
}

// RecordStart records the portal starting, with its non-secret settings.
func (s *Service) RecordStart(ctx context.Context, settings map[string]string) error {
	return s.record(ctx, s.newEvent(ctx, "certportal", "", audit.ActionPortalStart, audit.OutcomeSuccess, "", settings))
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
