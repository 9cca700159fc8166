package ui

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store"
)

// The step-up fields every gated form carries when a step-up is due (the
// "stepup" partial), and the step-up page posts.
const (
	fieldStepUpPassword = "stepup_password"
	fieldStepUpCode     = "stepup_code"
	// stepUpRelang, in the query, asks for the step-up page again in the
	// language of the query's lang (the page's language switch).
	stepUpRelang = "stepup_relang"
)

// stepUpForm says how the step-up page repeats a gated form.
type stepUpForm struct {
	// retype are the form's secret fields, with their labels: the page
	// asks for them again instead of keeping them (a .p12 password is
	// never echoed into a page or kept on the server).
	retype []retypeField
	// issue: the form downloads a .p12; the page script saves it and
	// then shows after(r).
	issue bool
	// json: the request comes from the page script (the device-key
	// path), which gets the step-up as a JSON answer and asks itself.
	json bool
}

type retypeField struct{ Name, Label string }

// keptField is a non-secret field of the gated form, carried through the
// step-up page as a hidden input so the user's choices are not lost.
type keptField struct{ Name, Value string }

var (
	stepUpPlain = stepUpForm{}
	stepUpJSON  = stepUpForm{json: true}
	stepUpIssue = stepUpForm{issue: true, retype: []retypeField{
		{Name: "password", Label: "dash.password"}, {Name: "password_confirm", Label: "dash.password_again"}}}
)

// stepUp gates a risky POST (a download, a revocation, a helpdesk action):
// when the session's last proof is older than CERTPORTAL_MFA_STEP_UP, the
// request must carry the user's password (and code, when Vault asks for
// one) in stepup_password and stepup_code. Vault checks them (a fresh
// login, Service.StepUp); then the session's proof time is renewed, under
// a new session id, and the action runs in the same request. Without them, or when Vault refuses,
// the answer is the step-up page: the same form again, its choices kept,
// that re-submits to the same action.
func (s *Server) stepUp(f stepUpForm) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := identityFrom(r.Context())
			if id != nil && !f.json && r.URL.Query().Has(stepUpRelang) {
				// The step-up page's language switch: the same page in the
				// chosen language, choices kept; never the action, and
				// no attempt.
				if !s.parseForm(w, r) {
					return
				}
				s.renderStepUp(w, r, f, http.StatusOK, "", id.MFA || r.PostForm.Has(fieldStepUpCode))
				return
			}
			if id == nil || !s.Service.StepUpDue(id) {
				next.ServeHTTP(w, r)
				return
			}
			if !s.parseForm(w, r) {
				return
			}
			password := r.PostFormValue(fieldStepUpPassword)
			if password == "" {
				s.renderStepUp(w, r, f, http.StatusUnauthorized, "", id.MFA)
				return
			}
			live, err := s.Service.StepUp(r.Context(), id, password, r.PostFormValue(fieldStepUpCode), s.deviceToken(r), r.Method+" "+r.URL.Path)
			if err != nil {
				var pe *portal.Error
				if errors.As(err, &pe) && (pe.Code == portal.EUnauthorized || pe.Code == portal.ETooMany || pe.Code == portal.EForbidden) {
					setRetryAfter(w, pe)
					// What the page asked for: a code when the session's
					// login had one, or when the page had the field
					// (Vault asked for one at the last try).
					asked := id.MFA || r.PostForm.Has(fieldStepUpCode)
					msg := pe.Message
					if msg == "error.stepup_failed" && !asked {
						// The refusal names what was asked: no code
						// was, so it is the password.
						msg = "error.stepup_password_failed"
					}
					s.renderStepUp(w, r, f, statusFor(pe.Code), msg, asked || pe.Message == "error.stepup_code_needed")
					return
				}
				s.fail(w, r, err)
				return
			}
			sess := sessionFrom(r.Context())
			sess.Values[valAuthAt] = live.AuthAt
			if live.MFA {
				sess.Values[valMFA] = "totp"
			} else {
				delete(sess.Values, valMFA)
			}
			// A new session id with the proof: a copy of the cookie taken
			// before is not stepped up (it names nothing once session.MoveGrace is
			// over; within it, it is forwarded to the new one). The new
			// cookie comes with this answer, so the page script's next
			// fetch (the page after a download) sends it.
			if err := s.rotateSession(w, r, sess, live); errors.Is(err, store.ErrNotFound) {
				s.failStatus(w, r, http.StatusUnauthorized, "error.session_expired") // logged out meanwhile
				return
			} else if err != nil {
				// Vault vouched for this request; the next one asks again.
				s.Logger.WarnContext(r.Context(), "step-up not saved in the session", "user", id.Username, "err", err)
			}
			// The handler never sees the step-up secrets.
			for _, k := range []string{fieldStepUpPassword, fieldStepUpCode} {
				r.PostForm.Del(k)
				r.Form.Del(k)
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyIdentity, live)))
		})
	}
}

// renderStepUp shows the step-up page for the gated request r: its
// non-secret fields kept as hidden inputs, its secret ones (f.retype) to be
// typed again, the password and, when mfa, the code.
func (s *Server) renderStepUp(w http.ResponseWriter, r *http.Request, f stepUpForm, status int, errKey string, mfa bool) {
	if f.json {
		if errKey == "" {
			errKey = "stepup.title"
		}
		writeJSON(w, status, csrError{Error: i18n.T(i18n.FromRequest(r), errKey), Code: errKey, StepUp: true, MFA: mfa})
		return
	}
	p := s.newPage(r, "stepup.title")
	p.Error = errKey
	p.StepUpCode = mfa
	// The path as the browser sent it: a decoded "%3F" in a serial must
	// not turn into a query when the page posts back.
	action := r.URL.EscapedPath()
	p.StepUpAction = action
	p.StepUpRetype = f.retype
	p.StepUpIssue = f.issue
	p.StepUpRelang = true
	if f.issue {
		p.StepUpAfter = "/"
		if strings.HasPrefix(action, "/helpdesk/users/") {
			p.StepUpAfter = strings.TrimSuffix(action, "/certificates") + "?notice=onbehalf"
		}
	}
	secret := map[string]bool{fieldStepUpPassword: true, fieldStepUpCode: true}
	for _, rf := range f.retype {
		secret[rf.Name] = true
	}
	names := make([]string, 0, len(r.PostForm))
	for k := range r.PostForm {
		// Anything that looks like a password is never echoed, declared
		// or not.
		if !secret[k] && !strings.Contains(strings.ToLower(k), "password") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range r.PostForm[k] {
			p.StepUpKeep = append(p.StepUpKeep, keptField{Name: k, Value: v})
		}
	}
	s.render(w, r, status, "stepup", p)
}
