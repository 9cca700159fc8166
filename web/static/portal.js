// certportal's page script. Optional: every page works without it (the
// certificate form is a plain POST whose answer is the file). With it, the
// form downloads without leaving the page, and the page then shows the new
// certificate, cleared password fields and how to install the file.
// Same-origin only, no inline code, no third-party code: CSP script-src 'self'.
(function () {
  'use strict';

  // Dates arrive as UTC with the zone named; show them in the reader's own
  // time zone, still named, in the same unambiguous order the server uses
  // (2026-12-01 21:05 CET): 12/01 reads as two different days around the world.
  function localTimes(root) {
    root.querySelectorAll('time[datetime]').forEach(function (el) {
      var d = new Date(el.getAttribute('datetime'));
      if (isNaN(d.getTime())) return;
      var opts = { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZoneName: 'short' };
      var seconds = el.hasAttribute('data-seconds');
      if (seconds) opts.second = '2-digit';
      try {
        var p = {};
        new Intl.DateTimeFormat('en-US', opts).formatToParts(d).forEach(function (x) { p[x.type] = x.value; });
        var text = p.year + '-' + p.month + '-' + p.day + ' ' + p.hour + ':' + p.minute + (seconds ? ':' + p.second : '') + ' ' + p.timeZoneName;
        if (!el.title) el.title = el.textContent;
        el.textContent = text;
      } catch (e) { /* keep the server's UTC text */ }
    });
  }

  // The server's file name: RFC 6266 filename* (UTF-8) first, then filename.
  function fileName(header) {
    var m = /filename\*=UTF-8''([^;]+)/i.exec(header || '');
    if (m) {
      try { return decodeURIComponent(m[1]); } catch (e) { /* fall through */ }
    }
    m = /filename="?([^";]+)"?/i.exec(header || '');
    return m ? m[1] : 'certificate.p12';
  }

  function save(blob, name) {
    var url = URL.createObjectURL(blob);
    var a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    // The object URL holds the key in this tab's memory: let go of it once
    // the browser has had time to save the file.
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  // replaceMain swaps this page's <main> for the one in html, so the page
  // shows exactly what the server renders for it (any replica can).
  function replaceMain(html) {
    var doc = new DOMParser().parseFromString(html, 'text/html');
    var fresh = doc.querySelector('main');
    var main = document.querySelector('main');
    if (!fresh || !main) return null;
    main.innerHTML = fresh.innerHTML;
    if (doc.title) document.title = doc.title;
    // The language switch belongs to the page shown: the step-up page's
    // re-posts the form's choices, a link would lose them.
    var langs = document.querySelector('header .langs'), freshLangs = doc.querySelector('header .langs');
    if (langs && freshLangs) langs.outerHTML = freshLangs.outerHTML;
    localTimes(main);
    showKeyOrigin();
    return main;
  }

  function focusFirst(main, selectors) {
    for (var i = 0; i < selectors.length; i++) {
      var el = main.querySelector(selectors[i]);
      if (el) {
        el.focus();
        if (el.scrollIntoView) el.scrollIntoView({ block: 'start' });
        return;
      }
    }
  }

  function clearPasswords(form) {
    form.querySelectorAll('input[type=password]').forEach(function (el) { el.value = ''; });
  }

  // showIssued shows the page after a download: the new certificate and
  // how to install the file saved as name.
  // after: the form's data-after; a page with a notice (a helpdesk
  // on-behalf form's) names the certificate by its serial.
  function showIssued(after, name, serial) {
    if (serial && after.indexOf('?notice=') > 0) after += '&serial=' + encodeURIComponent(serial);
    return fetch(after, { credentials: 'same-origin' }).then(function (r) { return r.text(); }).then(function (html) {
      var main = replaceMain(html);
      if (!main) return;
      if (window.location.pathname + window.location.search !== after && window.history && history.replaceState) history.replaceState(null, '', after);
      var file = main.querySelector('#issued-file');
      if (file) file.textContent = (file.getAttribute('data-saved') || '%s').replace('%s', name);
      focusFirst(main, ['#issued', '#certificates']);
    });
  }

  // Keys made on this device (the form's "Create the key on this device"):
  // the WebAssembly module (Go's crypto, the server's own .p12 code) makes
  // the key and the CSR; only the CSR, validity and label are posted; the
  // certificate comes back as JSON and the .p12 is built here. The key and
  // the file password never leave this page's memory: nothing is stored
  // (no IndexedDB, no localStorage) and nothing but the CSR is sent.
  var deviceModule = null;
  function loadDeviceModule(box) {
    if (deviceModule) return deviceModule;
    deviceModule = new Promise(function (resolve, reject) {
      if (!window.WebAssembly) { reject(new Error('no WebAssembly')); return; }
      var s = document.createElement('script');
      s.src = box.getAttribute('data-wasm-exec');
      s.onerror = function () { reject(new Error('wasm_exec.js')); };
      s.onload = function () {
        var go = new window.Go();
        var url = box.getAttribute('data-wasm');
        var started = WebAssembly.instantiateStreaming
          ? WebAssembly.instantiateStreaming(fetch(url, { credentials: 'same-origin' }), go.importObject)
          : fetch(url, { credentials: 'same-origin' }).then(function (r) { return r.arrayBuffer(); }).then(function (b) { return WebAssembly.instantiate(b, go.importObject); });
        started.then(function (res) {
          go.run(res.instance); // returns when the page goes away
          if (window.certportalDeviceKey) resolve(window.certportalDeviceKey); else reject(new Error('module did not start'));
        }, reject);
      };
      document.head.appendChild(s);
    });
    deviceModule.catch(function () { deviceModule = null; });
    return deviceModule;
  }

  // A field error found on this page (the two passwords differ) looks
  // like the server's: the red .error box, here right under the field,
  // the field aria-invalid and described by it, the cursor in it. It goes
  // when either password is edited or the form is sent again; the status
  // line under the button (.busy) is for progress and lost connections.
  var pairNames = ['password', 'password_confirm'];
  function fieldError(form, field, text) {
    var p = errorBox(form, text, 'field-error');
    p.id = field.id + '-error';
    field.insertAdjacentElement('afterend', p);
    field.setAttribute('aria-invalid', 'true');
    describedBy(field, p.id, true);
    field.focus();
  }

  function describedBy(field, id, add) {
    var ids = (field.getAttribute('aria-describedby') || '').split(/\s+/).filter(function (x) { return x && x !== id; });
    if (add) ids.push(id);
    if (ids.length) field.setAttribute('aria-describedby', ids.join(' ')); else field.removeAttribute('aria-describedby');
  }

  // clearFieldError takes away the errors on this form's fields: this
  // page's, and the server's (#form-error, when it named one of them).
  function clearFieldError(form) {
    form.querySelectorAll('.field-error').forEach(function (el) { el.remove(); });
    form.querySelectorAll('[aria-invalid="true"]').forEach(function (el) {
      el.removeAttribute('aria-invalid');
      describedBy(el, el.id + '-error', false);
      if ((el.getAttribute('aria-describedby') || '').split(/\s+/).indexOf('form-error') >= 0) {
        describedBy(el, 'form-error', false);
        var server = document.getElementById('form-error');
        if (server) server.hidden = true;
      }
    });
  }

  // deviceMessage: the device path failed (the portal refused the request,
  // the key or the file could not be made). The reason is an error, not
  // progress: on the field the portal named (fieldError), or else the red
  // .error box above the button, announced, in place of the status line;
  // it goes like a field error when the form is sent again.
  function deviceMessage(form, text, fieldName) {
    var field = fieldName && form.querySelector('input[name=' + fieldName + ']:not([type=hidden])');
    if (field) { fieldError(form, field, text); return; }
    var p = errorBox(form, text, 'field-error device-error');
    var button = form.querySelector('button[type=submit]');
    if (button) button.insertAdjacentElement('beforebegin', p); else form.appendChild(p);
  }

  // errorBox ends the form's wait (status line hidden, button back) and
  // its earlier errors, and makes the announced red box for text, for the
  // caller to place.
  function errorBox(form, text, classes) {
    clearFieldError(form);
    var busy = form.querySelector('.busy');
    var button = form.querySelector('button[type=submit]');
    if (busy) busy.hidden = true;
    if (button) button.disabled = false;
    var p = document.createElement('p');
    p.className = 'error ' + classes;
    p.setAttribute('role', 'alert');
    p.textContent = text;
    return p;
  }

  // The step-up age passed while the form was open: show this page's form
  // again as the server now renders it (with the password and code fields
  // of the step-up), keeping the choices made but no password.
  function stepUpAgain(form) {
    var keep = {};
    ['label', 'ttl'].forEach(function (n) { var el = form.querySelector('[name=' + n + ']'); if (el) keep[n] = el.value; });
    var enc = form.querySelector('input[name=encryption]:checked');
    var origin = form.querySelector('input[name=key_origin]:checked');
    return fetch(window.location.pathname + window.location.search, { credentials: 'same-origin' }).then(function (r) { return r.text(); }).then(function (html) {
      var main = replaceMain(html);
      if (!main) return;
      var fresh = main.querySelector('#issue-form');
      if (!fresh) return;
      Object.keys(keep).forEach(function (n) { var el = fresh.querySelector('[name=' + n + ']'); if (el) el.value = keep[n]; });
      if (enc) { var e = fresh.querySelector('input[name=encryption][value=' + enc.value + ']'); if (e) e.checked = true; }
      if (origin) { var o = fresh.querySelector('input[name=key_origin][value=' + origin.value + ']'); if (o) o.checked = true; }
      focusFirst(main, ['[name=stepup_password]']);
    });
  }

  function submitDevice(form, box) {
    var button = form.querySelector('button[type=submit]');
    var busy = form.querySelector('.busy');
    var pw = form.querySelector('input[name=password]');
    if (!pw) { deviceMessage(form, box.getAttribute('data-failed')); return; }
    if (button) button.disabled = true;
    if (busy) { busy.textContent = busy.getAttribute('data-busy') || busy.textContent; busy.hidden = false; }
    var after = form.getAttribute('data-after') || '/';
    var checked = form.querySelector('input[name=encryption]:checked');
    var enc = checked ? checked.value : 'modern';
    loadDeviceModule(box).then(function (dk) {
      var made = dk.csr('');
      if (!made || made.error) throw new Error('key');
      // Only these fields are sent: never the password fields.
      var body = new URLSearchParams();
      body.set('csr', made.csr);
      // The file's encryption, for the inventory and a later renewal: the
      // portal never sees the file, so the page tells it what it packs.
      body.set('encryption', enc);
      ['ttl', 'label', 'renew_serial', 'stepup_password', 'stepup_code'].forEach(function (n) {
        var el = form.querySelector('[name=' + n + ']');
        if (el && el.value) body.set(n, el.value);
      });
      var revoke = form.querySelector('input[name=revoke_old]');
      if (revoke && revoke.checked) body.set('revoke_old', '1');
      return fetch(box.getAttribute('data-action'), {
        method: 'POST', body: body, credentials: 'same-origin', headers: { Accept: 'application/json' }
      }).then(function (resp) {
        return resp.json().then(function (j) {
          if (j.stepup) { dk.forget(); return stepUpAgain(form); }
          if (!resp.ok || !j.certificate) { dk.forget(); deviceMessage(form, j.error || box.getAttribute('data-failed'), j.error && j.field); return; }
          var data = dk.p12(j.certificate, j.ca_chain, pw.value, enc);
          if (!data || data.error) { deviceMessage(form, box.getAttribute(data && data.error === 'password' ? 'data-password' : 'data-failed')); return; }
          var name = j.filename || 'certificate.p12';
          save(new Blob([data], { type: 'application/x-pkcs12' }), name);
          data.fill(0);
          clearPasswords(form);
          return showIssued(after, name);
        });
      });
    }).catch(function () {
      deviceMessage(form, box.getAttribute('data-failed'));
    });
  }

  function submitIssue(form) {
    var button = form.querySelector('button[type=submit]');
    var busy = form.querySelector('.busy');
    if (button) button.disabled = true;
    if (busy) { busy.textContent = busy.getAttribute('data-busy') || busy.textContent; busy.hidden = false; }
    var after = form.getAttribute('data-after') || '/';
    fetch(form.action, {
      method: 'POST',
      body: new URLSearchParams(new FormData(form)),
      credentials: 'same-origin',
      headers: { Accept: 'application/x-pkcs12, text/html' }
    }).then(function (resp) {
      var type = resp.headers.get('Content-Type') || '';
      if (resp.ok && type.indexOf('application/x-pkcs12') === 0) {
        var name = fileName(resp.headers.get('Content-Disposition'));
        var serial = resp.headers.get('X-Certificate-Serial');
        return resp.blob().then(function (blob) {
          save(blob, name);
          clearPasswords(form);
          return showIssued(after, name, serial);
        });
      }
      // A refused form comes back as a page: show it, cursor on the field.
      return resp.text().then(function (html) {
        var main = replaceMain(html);
        if (main) focusFirst(main, ['[autofocus]', '#form-error', '.error']);
      });
    }).catch(function () {
      // Nothing is resent on its own: a lost answer may still have issued a
      // certificate, which the list shows after a reload.
      if (button) button.disabled = false;
      if (busy) { busy.textContent = busy.getAttribute('data-failed') || ''; busy.hidden = false; }
    });
  }

  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!form || form.id !== 'issue-form' || !window.fetch || !window.URLSearchParams || !window.DOMParser || !URL.createObjectURL) return;
    if (form.checkValidity && !form.checkValidity()) return;
    ev.preventDefault();
    // Both key paths: two passwords that differ never leave the page.
    var pw = form.querySelector('input[name=password]');
    var pw2 = form.querySelector('input[name=password_confirm]');
    if (pw && pw2 && pw.value !== pw2.value) { fieldError(form, pw2, pw2.getAttribute('data-mismatch') || ''); return; }
    clearFieldError(form);
    var box = form.querySelector('#key-origin');
    var device = form.querySelector('input[name=key_origin][value=device]');
    if (box && device && device.checked) submitDevice(form, box); else submitIssue(form);
  });

  // The device-key choice needs this script and WebAssembly: without them
  // it stays hidden and the form is the server path.
  function showKeyOrigin() {
    var box = document.getElementById('key-origin');
    if (box && window.WebAssembly && window.fetch && window.URLSearchParams) box.hidden = false;
  }

  // An enrolment link carries its token in the fragment (#token=...),
  // which browsers never send, so no proxy or server log in front of the
  // portal sees it. Move it into the form's field, hide the field, and take
  // it out of the address bar and the history entry.
  function enrolToken() {
    var field = document.getElementById('enrol-token');
    var m = /^#token=([A-Za-z0-9_%-]+)$/.exec(window.location.hash);
    if (!field || !m) return;
    try { field.value = decodeURIComponent(m[1]); } catch (e) { return; }
    var box = document.getElementById('enrol-code');
    if (box) box.hidden = true;
    if (window.history && history.replaceState) history.replaceState(null, '', window.location.pathname);
  }

  // A copy button (data-copy names the element whose text it copies; the
  // enrolment link the helpdesk passes on). Without the clipboard (an
  // http:// address other than localhost, a refused permission) it selects
  // the text and says to press the copy key.
  function copyButtons() {
    document.querySelectorAll('button[data-copy]').forEach(function (b) {
      var src = document.getElementById(b.getAttribute('data-copy'));
      var status = document.getElementById(b.getAttribute('data-status'));
      if (!src) return;
      b.hidden = false;
      b.addEventListener('click', function () {
        var say = function (attr) { if (status) status.textContent = b.getAttribute(attr); };
        var select = function () {
          var r = document.createRange();
          r.selectNodeContents(src);
          var sel = window.getSelection();
          sel.removeAllRanges();
          sel.addRange(r);
          say('data-selected');
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(src.textContent.trim()).then(function () { say('data-copied'); }, select);
        } else {
          select();
        }
      });
    });
  }

  // Editing either password, or a field marked invalid, takes the error away.
  document.addEventListener('input', function (ev) {
    var el = ev.target;
    if (!el || !el.form || el.form.id !== 'issue-form') return;
    if (pairNames.indexOf(el.name) < 0 && el.getAttribute('aria-invalid') !== 'true') return;
    clearFieldError(el.form);
  });

  function ready() { localTimes(document); showKeyOrigin(); enrolToken(); copyButtons(); }
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', ready);
  } else {
    ready();
  }
})();
