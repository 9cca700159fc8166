package ui

import (
	"context"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store"
)

// navigated reports whether the browser itself sent r as a top-level
// navigation: a form posted without the page script (JavaScript off or
// failed to load). Every current browser says so in Sec-Fetch-Mode; the
// page script's fetch is "cors", and curl or a script sends no such
// header, so both keep getting the file itself.
func navigated(r *http.Request) bool {
	return r.Header.Get("Sec-Fetch-Mode") == "navigate"
}

// p12Prefix starts the data: URL that carries a .p12 on the save page.
const p12Prefix = "data:application/x-pkcs12;base64,"

// savePage answers a certificate form the browser posted itself with the
// page the page script shows after its download (the form's data-after:
// the dashboard with the new certificate and how to install it), the file
// on it as a save link. Answered with the file alone, such a browser
// saves it and stays on the page it came from: the old list, an earlier
// try's error, no install steps.
//
// The portal keeps neither key nor file, so this page is the file's only
// copy: it is sent with no-store (like the download) and says so; its
// header offers no language switch (OneTime), which would load the page
// again without it. The trail records the page's delivery as the
// download's, since the page is the download.
func (s *Server) savePage(w http.ResponseWriter, r *http.Request, dl *portal.Download) {
	if s.clientGone(r, dl) {
		return
	}
	get := dashboardRequest(r)
	p, ok := s.issueFormPage(w, get, "dashboard", nil, "", nil)
	if !ok {
		s.notDelivered(r, dl, "the page with the file could not be made")
		return
	}
	p.Recent = nil
	for i := range p.Certs {
		if p.Certs[i].Serial == dl.Serial {
			p.Recent = &p.Certs[i]
		}
	}
	if p.Recent == nil {
		// Not in the list this replica read: the page still leads with it.
		p.Recent = &portal.CertificateView{Certificate: &store.Certificate{Serial: dl.Serial, Label: dl.Label, IssuedAt: dl.IssuedAt, NotAfter: dl.NotAfter}}
	}
	s.offerFile(w, get, r, dl, "dashboard", p)
}

// offerFile answers r with page name, p, carrying dl's file as its save
// link (p.Save), rendered for get (the page's own GET), and records the
// page's delivery as the download's. The page cannot be shown again
// (OneTime: no language switch) and is sent with no-store.
func (s *Server) offerFile(w http.ResponseWriter, get, r *http.Request, dl *portal.Download, name string, p *page) {
	p.OneTime = true
	data := base64.StdEncoding.EncodeToString(dl.Data)
	// The whole attribute, trusted: html/template would write each "+" of
	// the base64 as "&#43;" in an href, a larger page whose file no longer
	// sits in it as plain base64 (counted below). Nothing but our own
	// base64 (A-Z a-z 0-9 + / =) and a fixed prefix goes in.
	p.Save = &savedFile{Name: dl.Filename, Href: template.HTMLAttr(`href="` + p12Prefix + data + `"`)} //nolint:gosec // see above
	out, ok := s.execute(w, get, name, p)
	if !ok {
		s.notDelivered(r, dl, "the page with the file could not be made")
		return
	}
	// The file's bytes among the page's: base64 from this offset on.
	at := strings.Index(out, p12Prefix+data)
	if at < 0 {
		s.Logger.ErrorContext(r.Context(), "save page without its file", "serial", dl.Serial)
		s.failStatus(w, r, http.StatusInternalServerError, "error.internal")
		s.notDelivered(r, dl, "the page with the file could not be made")
		return
	}
	at += len(p12Prefix)
	h := w.Header()
	h.Set("Content-Length", strconv.Itoa(len(out)))
	h.Set("Pragma", "no-cache")
	h.Set("X-Certificate-Serial", dl.Serial)
	w.WriteHeader(http.StatusOK)
	s.deliver(w, r, dl, []byte(out), "page with the file", func(n int) int { return fileBytesIn(n, at, len(dl.Data)) })
}

// dashboardRequest is r as the dashboard's own GET of "/" (the page the
// page script shows after its download): nothing of the posted form (its
// label, validity, errors) carried into the next form.
func dashboardRequest(r *http.Request) *http.Request { return pageRequest(r, "/") }

// pageRequest is r as a GET of path, nothing of r's form or query in it.
func pageRequest(r *http.Request, path string) *http.Request {
	get := r.Clone(r.Context())
	get.Method, get.URL, get.Form, get.PostForm = http.MethodGet, &url.URL{Path: path}, url.Values{}, url.Values{}
	return get
}

// fileBytesIn is how many bytes of a size-byte file, base64 from offset at
// of a page, the page's first n bytes carry.
func fileBytesIn(n, at, size int) int {
	return min(size, max(0, n-at)/4*3)
}

// notDelivered records that dl never went out, and why.
func (s *Server) notDelivered(r *http.Request, dl *portal.Download, why string) {
	go s.Service.RecordDownload(context.WithoutCancel(r.Context()), identityFrom(r.Context()), dl, 0, why)
}
