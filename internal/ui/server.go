// Package ui is certportal's HTTP layer: routes, middleware and one handler
// file per action, rendering the embedded templates from web/.
package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/session"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/web"
)

// Pinger is a dependency /readyz checks.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Deps are everything the HTTP layer needs, passed in explicitly.
type Deps struct {
	Service  *portal.Service
	Sessions *session.Manager
	Store    Pinger
	Logger   *slog.Logger
	Metrics  *metrics.Metrics // served at /metrics; nil: no /metrics
	// MetricsApart: /metrics is served on a listener of its own
	// (CERTPORTAL_METRICS_LISTEN), not beside the pages users reach.
	MetricsApart bool
	Secure       bool // browsers reach the portal over HTTPS: HSTS, Secure cookies
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// (see clientIP); none: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	MaxBodyBytes   int64 // request bodies above this get 413
	// WhoamiURL is where a user checks their installed certificate: the
	// protected site's whoami page (CERTPORTAL_SERVICE_URL). Empty: the
	// dashboard names no page to check with.
	WhoamiURL string
	// SessionRecheck is how long Vault's word on a session's token holds
	// before the next request asks again; 0 means a minute.
	SessionRecheck time.Duration
	// AccountName is what employees call the account they log in with
	// (CERTPORTAL_ACCOUNT_NAME); empty: the catalog's "your company account".
	AccountName string
	// PublicURL is the portal's address as users reach it
	// (CERTPORTAL_PUBLIC_URL): enrolment links are built from it rather
	// than from the request's Host header, which the client chooses.
	PublicURL string
	// Reminders records users' languages and lists the expiry reminders
	// sent to them; nil: neither.
	Reminders Reminders
	// Now is the portal's clock (nil: time.Now): the one the session and
	// the Vault client count with, so token expiry is compared on it.
	Now func() time.Time
	// VaultClock reports how far Vault's clock is from the portal's, for
	// /readyz; nil: not shown.
	VaultClock VaultClock
}

// VaultClock is the Vault client's view of Vault's clock (vault.Client).
type VaultClock interface {
	ClockSkew() (skew time.Duration, known bool)
	SkewWarn() time.Duration // 0: never warn
}

// Server holds parsed templates and dependencies.
type Server struct {
	Deps
	pages map[string]*template.Template
	// mux is the router, kept to ask which GET page a path has (for the
	// language switch on POST results and trailing-slash redirects).
	mux *chi.Mux
	// ownGETs matches the GETs that do work and run only on the user's own
	// navigation (ownGET): the login's redirect to one asks for a click.
	ownGETs *chi.Mux
	// device is the device-key module, nil when this binary has none or
	// device keys are off.
	device *deviceAssets
	// script is the page script, web/static/portal.js, served by its
	// content-hashed name.
	script *pageScript
	// lastProxyWarning (unix seconds) rate-limits the warning about
	// X-Forwarded-For from a peer that is not a trusted proxy.
	lastProxyWarning atomic.Int64
}

var pageNames = []string{"login", "login_mfa", "login_enrol_needed", "logout", "dashboard", "renew", "revoke", "helpdesk", "helpdesk_revoke", "audit", "audit_inventory", "audit_inventory_certs", "audit_reconcile", "helpdesk_vault_revoke", "enrol_link", "enrol", "enrol_scan", "stepup", "continue", "error"}

// New parses every template (a broken or missing template fails here, at
// start-up, not on a user's request) and returns the routed handler.
func New(d Deps) (http.Handler, error) {
	s, err := newServer(d)
	if err != nil {
		return nil, err
	}
	return s.mux, nil
}

// newServer is New's server, for the package's tests to reach inside.
func newServer(d Deps) (*Server, error) {
	if d.Service == nil || d.Sessions == nil || d.Store == nil || d.Logger == nil {
		return nil, errors.New("ui: missing dependency")
	}
	if d.MaxBodyBytes <= 0 {
		d.MaxBodyBytes = 64 << 10
	}
	if d.SessionRecheck <= 0 {
		d.SessionRecheck = time.Minute
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	script, err := loadPageScript()
	if err != nil {
		return nil, err
	}
	s := &Server{Deps: d, pages: map[string]*template.Template{}, script: script}
	// The session manager ends sessions the UI wrote; the UI knows where
	// their Vault token is.
	d.Sessions.OnEnd(s.sessionEnded)
	funcs := template.FuncMap{
		"t":    func(l i18n.Lang, key string, args ...any) string { return i18n.T(l, key, args...) },
		"date": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		// seconds: audit times are compared with logs and other systems
		"datetime": auditTime,
		"details":  eventDetails,
		// rfc3339 feeds <time datetime>, which the page script shows in
		// the reader's own time zone.
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"short":   shortSerial,
		"pair":    func(a *page, b portal.CertificateView) pagePair { return pagePair{a, b} },
		"serial":  serialHTML,
		// stepup gives the step-up partial its page and a prefix for the
		// ids of its fields (two gated forms may share a page).
		"stepup": func(p *page, prefix string) stepUpFields { return stepUpFields{p, prefix} },
		// script is the page script's URL, its content hash in the name.
		"script": func() string { return script.url() },
	}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(web.Templates, "templates/layout.html", "templates/partials.html", "templates/reminders.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", name, err)
		}
		if t.Lookup("layout") == nil || t.Lookup("content") == nil {
			return nil, fmt.Errorf("ui: template %s lacks layout or content", name)
		}
		s.pages[name] = t
	}
	if mode := d.Service.DeviceKeys(); mode != portal.DeviceKeysOff {
		a, err := loadDeviceAssets()
		switch {
		case err != nil && mode == portal.DeviceKeysRequired:
			return nil, fmt.Errorf("CERTPORTAL_DEVICE_KEYS=required: %w", err)
		case err != nil:
			d.Logger.Warn("device keys offered, but the page cannot offer them", "err", err)
		default:
			s.device = a
		}
	}
	if _, err := fs.Stat(web.Static, "static/style.css"); err != nil {
		return nil, fmt.Errorf("ui: static assets: %w", err)
	}
	s.mux = s.routes()
	return s, nil
}

// page is the data every template gets.
type page struct {
	// MFA enrolment: the one-time link (shown once to the agent), the
	// token carried through the user's form, and the QR code (a data: URL
	// of Vault's PNG) with the secret for typing in, on one page only.
	EnrolURL     string
	EnrolExpires time.Time
	EnrolToken   string
	QRImage      template.URL
	TOTPSecret   string
	ScanIntro    string // catalog key: the scan page after a link, or at a first login (trust on first use)
	ScanKey      string // the scan page's otpauth URL, sent back with the code so a wrong code can show the page again
	MFAEnrol     bool   // the helpdesk user page offers enrolment
	// OneTime marks a page that cannot be shown again (the QR code and
	// key, the enrolment link): the header offers no language switch,
	// whose link would load another page and lose it for good.
	OneTime bool
	// EnrolRelang: the header's language switch sends the enrolment form
	// (enrol_relang), so the token goes along in the body: it came in the
	// link's fragment, which a link to another language would lose.
	EnrolRelang bool
	// Step-up: StepUpDue puts password (and, with StepUpCode, code)
	// fields into every gated form; the step-up page repeats a gated form
	// (StepUpAction) with its non-secret fields kept (StepUpKeep) and its
	// secret ones to type again (StepUpRetype); StepUpIssue lets the page
	// script save a download and then show StepUpAfter.
	StepUpDue    bool
	StepUpCode   bool
	StepUpAction string
	StepUpKeep   []keptField
	// StepUpRelang: the header's language switch posts StepUpKeep to
	// StepUpAction with stepup_relang, which shows this page again in the
	// chosen language (a link would lose the kept choices).
	StepUpRelang bool
	StepUpRetype []retypeField
	StepUpIssue  bool
	StepUpAfter  string

	Lang  i18n.Lang
	Langs []i18n.Lang
	Title string
	Page  string // the template's name, a class on <body> for page-specific layout
	User  *portal.Identity
	// IsHelpdesk and IsAuditor show the helpdesk and audit links.
	IsHelpdesk bool
	IsAuditor  bool

	// NoticeCert names the certificate a helpdesk notice is about (its
	// label and serial): the notice's first argument, NoticeArg its second.
	NoticeCert string

	Notice string // catalog keys
	// Flash is a notice the session kept for the first page it shows
	// (takeFlash): said once, above the page's own content.
	Flash     string
	NoticeArg string // the notice's one argument, for notices that name someone
	Error     string
	ErrorWait int // minutes to wait, rounded up: the Error's "_wait" form says them
	// Reference is the request's id on a 5xx page ("Reference: …"), for
	// the user to quote to the helpdesk; empty on other pages.
	Reference string
	Field     string
	// Self is the GET page this page stands for, without ?lang=: the
	// language switch links to it, so switching never repeats a POST.
	Self string
	Back string // where "Back" leads; empty: the user's start page

	// login
	Username string
	Next     string // where to go after login: a local path, checked by safeNext
	// Continue is the same-origin link a cross-site navigation is offered
	// instead of the page (continueSameSite).
	Continue string
	// dashboard
	Subject string
	// The device-key option of the issue form: the module's and loader's
	// URLs (empty: not offered) and whether it is the only way.
	DeviceWasm, DeviceExec string
	DeviceRequired         bool
	// KeyServer: the form was sent with "let the server create it"
	// chosen, and comes back (a refused form) with that choice kept.
	KeyServer  bool
	TTLs       []ttlOption
	Encryption string
	WhoamiURL  string
	MaxActive  int
	// certificate tables
	Certs       []portal.CertificateView
	Reminders   []reminderView // expiry reminders sent (dashboard, helpdesk user page)
	CertActions bool
	Renew       *portal.CertificateView // renew and revoke pages
	Reasons     []string
	Reason      string // the reason chosen, kept when a form comes back
	// helpdesk
	Query    string
	Searched bool
	Users    []portal.UserResult
	Target   string
	// TargetUnknown: the user page's user is not in Vault (any more).
	TargetUnknown bool
	// Offboarded: the offboarding sweep's revocations of Target's
	// certificates, with the evidence they were made on.
	Offboarded []portal.OffboardRevocation
	// ReenrolMode: the helpdesk confirmation page is for "revoke so the
	// user enrols again", not a plain revocation.
	ReenrolMode bool
	// ReenrolExplain is the re-enrol page's catalog key: what happens
	// next depends on whether the helpdesk may issue on the user's behalf.
	ReenrolExplain string
	OnBehalf       bool   // the issue form on a user's page issues for them
	OnBehalfNo     string // why a user's page has no on-behalf form (a catalog key)
	MFANo          string // why a user's page has no MFA enrolment form (a catalog key)
	Ticket         string // kept when the on-behalf form comes back with an error
	// audit
	Chart       template.HTML
	ChartMax    int // what the top of the chart's scale stands for, a day
	Filter      auditForm
	FilterQuery template.URL // the filter, encoded, for links
	Actions     []string
	Outcomes    []string
	Events      []*audit.Event
	Paging      portal.AuditPaging
	Report      *portal.InventoryReport
	States      []string
	// inventory drill-down
	InvFilter       inventoryForm
	InvNext         string // serial the next page starts after; "" on the last
	InvAt           time.Time
	ReconcileStatus *portal.ReconcileStatus
	// ReconcileHold: automatic revocation held (nil: not), and the trail
	// page that shows its reconcile.held event first.
	ReconcileHold      *portal.ReconcileHold
	ReconcileHoldTrail string
	// reconciliation page groups, and the helpdesk page that revokes a
	// certificate the portal never issued
	ReconcileGroups []reconcileGroup
	VaultCert       *portal.VaultCertificate

	// The employee's journey (issue 10): what the dashboard shows before
	// and after a download.
	AccountName string                  // login: what the account is called
	FocusPass   bool                    // login: a failed attempt puts the cursor in the password field
	EncReason   string                  // catalog key: why this encryption is preselected
	Label       string                  // the label field's value
	KeepOld     bool                    // renew: the refused form had "revoke the old one" unticked
	Install     []installPlatform       // install steps, the visitor's platform first
	AtCap       bool                    // no more certificates: the form gives way to renew or revoke
	Recent      *portal.CertificateView // issued in the last few minutes: "it worked", install it now
	// Save is the new .p12 itself, on the page a browser without the page
	// script gets as the answer to its form (savePage); nil elsewhere.
	Save *savedFile
	// FormID is the certificate form's own id (certificate_sent.go): a
	// form sent again by the browser does not issue twice.
	FormID string
}

// savedFile is a .p12 offered as a save link: <a download=Name Href>.
type savedFile struct {
	Name string            // the name Content-Disposition gives the download
	Href template.HTMLAttr // href="data:application/x-pkcs12;base64,…"
}

// stepUpFields is the "stepup" partial's data.
type stepUpFields struct {
	P      *page
	Prefix string
}

// pagePair lets a row template reach both the page and its row.
type pagePair struct {
	A *page
	B portal.CertificateView
}

// serialHTML is a full serial that may wrap between its bytes (after each
// colon) on a narrow screen; copying it still copies the serial, since
// <wbr> adds no text.
func serialHTML(serial string) template.HTML {
	return template.HTML(strings.ReplaceAll(template.HTMLEscapeString(serial), ":", ":<wbr>")) //nolint:gosec // escaped above
}

// shortSerial shows the first and last bytes of a long serial; the full one
// is in the title attribute.
func shortSerial(s string) string {
	if len(s) <= 17 {
		return s
	}
	return s[:8] + "…" + s[len(s)-8:]
}

// linkNotice is a notice a link may ask a page for (?notice=NAME&serial=S,
// where the portal redirects after an action): its catalog key, which
// names the certificate, and what must hold of certificate S, as the page
// lists it, for the notice to be shown. A link from anywhere can so put
// no text of its own on a page, no notice on a page that lacks what it
// names (a helpdesk notice on the dashboard read "Tell %s to log in"), and
// no false one: "was revoked" of a certificate that is not, "tell bob to
// download a new certificate" when nobody revoked his, "issued for bob"
// of bob's own certificate.
type linkNotice struct {
	key   string
	holds func(c portal.CertificateView, viewer string) bool
}

var (
	dashboardNotices = map[string]linkNotice{"revoked": {"notice.revoked_named", isRevoked}}
	helpdeskNotices  = map[string]linkNotice{
		"reissued":  {"notice.reissued_named", isSuperseded},
		"hdrevoked": {"notice.hd_revoked_named", isRevoked},
		"onbehalf":  {"notice.onbehalf_named", issuedByViewer},
	}
)

func isRevoked(c portal.CertificateView, _ string) bool { return c.Revoked() }

// isSuperseded: revoked so the user gets a new one (the helpdesk's
// "revoke so they enrol again").
func isSuperseded(c portal.CertificateView, _ string) bool {
	return c.Revoked() && c.RevokeReason == "superseded"
}

// issuedByViewer: issued by the viewer for someone else (on their behalf).
func issuedByViewer(c portal.CertificateView, viewer string) bool {
	return c.IssuedBy == viewer && c.Username != viewer
}

// certNotice is the notice r's link asks of notices that holds of the
// certificate it names among certs (listed for viewer to see), with that
// certificate; key "" when there is none.
func certNotice(r *http.Request, notices map[string]linkNotice, certs []portal.CertificateView, viewer string) (key string, c portal.CertificateView) {
	n, ok := notices[r.URL.Query().Get("notice")]
	if !ok {
		return "", c
	}
	c, ok = listedCert(certs, r.URL.Query().Get("serial"))
	if !ok || !n.holds(c, viewer) {
		return "", portal.CertificateView{}
	}
	return n.key, c
}

func (s *Server) newPage(r *http.Request, title string) *page {
	id := identityFrom(r.Context())
	return &page{Lang: i18n.FromRequest(r), Langs: i18n.Supported, Title: title, User: id, Self: s.selfPage(r),
		IsHelpdesk: id != nil && id.Has(portal.RoleHelpdesk), IsAuditor: id != nil && id.Has(portal.RoleAuditor),
		// A form shown now asks for the step-up at once when it is due
		// (it may fall due before the form is sent: then the step-up page).
		StepUpDue: id != nil && s.Service.StepUpDue(id), StepUpCode: id != nil && id.MFA}
}

// selfPage is the GET page behind r: r itself for a GET (query kept, so a
// search survives a language switch), the same path when it also has a GET
// page, else the nearest one above it, else the dashboard. Handlers whose POST belongs to another page set
// Self themselves.
func (s *Server) selfPage(r *http.Request) string {
	// A path such as "//evil.example/" reaches the 404 page as it is; the
	// language links made from it must not lead to another site.
	if !isLocalPath(r.URL.Path) {
		return "/"
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		// The link is a URL: the decoded path is escaped again ("%" in it
		// would otherwise make it unreadable; found by FuzzSelfPage).
		self := (&url.URL{Path: r.URL.Path}).EscapedPath()
		q := r.URL.Query()
		q.Del("lang")
		if len(q) == 0 {
			return self
		}
		return self + "?" + q.Encode()
	}
	if s.hasGET(r.URL.Path) {
		return (&url.URL{Path: r.URL.Path}).EscapedPath()
	}
	// A POST of its own (a helpdesk action on a user): the nearest page
	// above it, so the header marks the right section. Cut on the escaped
	// path: an escaped "/" inside a segment (a username) is not a parent.
	esc := (&url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath}).EscapedPath()
	for i := strings.LastIndexByte(esc, '/'); i > 0; i = strings.LastIndexByte(esc, '/') {
		esc = esc[:i]
		if s.hasGET(esc) {
			return esc
		}
	}
	return "/"
}

// hasGET reports whether path is a page the router serves to GET.
func (s *Server) hasGET(path string) bool {
	return s.mux != nil && s.mux.Match(chi.NewRouteContext(), http.MethodGet, path)
}

// LangHref is the language switch's link to l: this page's GET form with
// lang set.
func (p *page) LangHref(l i18n.Lang) string {
	self := p.Self
	if self == "" {
		self = "/"
	}
	sep := "?"
	if strings.Contains(self, "?") {
		sep = "&"
	}
	return self + sep + "lang=" + url.QueryEscape(string(l))
}

// Section is the header link of the section the page belongs to
// ("mine", "helpdesk", "audit", or ""), marked aria-current.
func (p *page) Section() string {
	if p.Self == "/" || strings.HasPrefix(p.Self, "/?") || strings.HasPrefix(p.Self, "/certificates/") {
		return "mine"
	}
	for _, s := range []string{"helpdesk", "audit"} {
		if p.Self == "/"+s || strings.HasPrefix(p.Self, "/"+s+"/") || strings.HasPrefix(p.Self, "/"+s+"?") {
			return s
		}
	}
	return ""
}

// MineLink says whether the header links to the user's own certificates:
// for staff who are employees too, whose start page is their own section.
func (p *page) MineLink() bool {
	return p.User != nil && p.User.Has(portal.RoleEmployee) && landing(p.User) != "/"
}

// Home is where "Back" leads: the page's own choice, else the start page
// of the signed-in user's role.
func (p *page) Home() string {
	switch {
	case p.Back != "":
		return p.Back
	case p.User == nil:
		return "/login"
	default:
		return landing(p.User)
	}
}

// landing is where a role starts after login: staff on their own page
// (helpdesk first for someone with both), employees on the dashboard.
func landing(id *portal.Identity) string {
	switch {
	case id.Has(portal.RoleHelpdesk):
		return "/helpdesk"
	case id.Has(portal.RoleAuditor):
		return "/audit"
	default:
		return "/"
	}
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	if status >= 500 {
		// The user quotes it to the helpdesk; operators find the request
		// by it in the log (every log line of a failed request names it).
		p.Reference = RequestID(r.Context())
	}
	out, ok := s.execute(w, r, name, p)
	if !ok {
		return
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, out)
}

// execute renders page name and sets the headers every page carries, for
// the caller to write; when the template fails it has answered with the
// error page instead (ok false).
func (s *Server) execute(w http.ResponseWriter, r *http.Request, name string, p *page) (out string, ok bool) {
	t := s.pages[name]
	p.Page = name
	s.takeFlash(r, p)
	if name == "enrol_scan" || name == "enrol_link" {
		p.OneTime = true
	}
	// A refused ticket or label is not put back into its field: what was
	// refused is often what cannot be seen (a filler, a zero-width
	// character), which the page shows either not at all or escaped as
	// text ("INC\u200b-7") that a second click would then send as the
	// value. The field comes back empty, to be typed again.
	switch p.Field {
	case "ticket", "mfa_ticket":
		p.Ticket = ""
	case "label":
		p.Label = ""
	}
	// Render to a buffer first, so a template failure becomes a clean 500
	// rather than half a page with a 200.
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.Logger.ErrorContext(r.Context(), "render template", "template", name, "request_id", RequestID(r.Context()), "err", err)
		s.renderFailed(w, r, name, p.Lang)
		return "", false
	}
	// html/template escapes markup, not invisible characters: a bidi
	// override in a ticket or an old trail row would reorder the page
	// around it. The templates themselves hold none, so escaping every
	// control and formatting character in the finished page makes every
	// page safe at once, whatever value a future template shows.
	out = audit.CleanDisplay(buf.String())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if p.OffersDeviceKey() {
		w.Header().Set("Content-Security-Policy", cspDeviceKeys)
	}
	return out, true
}

// valFlash is the session's one-time notice: a catalog key, set where the
// portal itself did the thing it tells of (a link cannot set it).
const valFlash = "flash"

// takeFlash moves the session's one-time notice onto p when p is a page a
// GET shows whole (not an error, not an answer to a form): the first such
// page says it, and no later one.
func (s *Server) takeFlash(r *http.Request, p *page) {
	sess := sessionFrom(r.Context())
	if sess == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) || p.Page == "error" {
		return
	}
	key, _ := sess.Values[valFlash].(string)
	if key == "" {
		return
	}
	delete(sess.Values, valFlash)
	if err := s.Sessions.Update(r.Context(), sess); err != nil && !errors.Is(err, store.ErrNotFound) {
		// Said again on the next page rather than never.
		s.Logger.WarnContext(r.Context(), "one-time notice not cleared in the session", "err", err)
	}
	p.Flash = key
}

// renderFailed answers for a page (name) whose template failed: the error
// page, a 500, as for any internal error. Nothing of the failed page was
// written (render buffers). When the error page is what failed, plain text
// says the same, so a broken error template cannot recurse.
func (s *Server) renderFailed(w http.ResponseWriter, r *http.Request, name string, lang i18n.Lang) {
	// A wait the failed page announced does not apply to a 500.
	w.Header().Del("Retry-After")
	if name != "error" {
		p := s.newPage(r, errorTitle(http.StatusInternalServerError))
		p.Error = "error.internal"
		s.render(w, r, http.StatusInternalServerError, "error", p)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, i18n.T(lang, "error.internal")+"\n"+i18n.T(lang, "error.reference", RequestID(r.Context())), http.StatusInternalServerError)
}

// OffersDeviceKey: the page's issue form offers "create the key on this
// device", so the page loads the device-key module and its CSP must let
// it compile WebAssembly. The issue form shows the choice on exactly this
// condition (web/templates/partials.html), so the CSP and the page cannot
// disagree: not on the helpdesk's on-behalf form (the key is made on the
// server), not at the cap (no form), not with device keys off or without
// a module in the binary (no URLs).
func (p *page) OffersDeviceKey() bool {
	return p.DeviceWasm != "" && !p.OnBehalf && !p.AtCap
}

// ttlOption is one choice of validity in the form.
type ttlOption struct {
	Value    string
	Label    string
	Selected bool
}

func ttlOptions(l i18n.Lang, ttls []time.Duration, selected time.Duration) []ttlOption {
	out := make([]ttlOption, 0, len(ttls))
	for _, d := range ttls {
		label := ""
		switch {
		case d == 24*time.Hour:
			label = i18n.T(l, "ttl.day")
		case d%(24*time.Hour) == 0:
			label = i18n.T(l, "ttl.days", int(d/(24*time.Hour)))
		default:
			label = i18n.T(l, "ttl.hours", int(d/time.Hour))
		}
		out = append(out, ttlOption{Value: d.String(), Label: label, Selected: d == selected})
	}
	return out
}
