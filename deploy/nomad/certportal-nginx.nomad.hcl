# Nginx admitting certportal client certificates on /secure, with its files
# rendered from Vault by Nomad's templates. Without Nomad, the same files come
# from `certportal nginx-certs --watch --reload-cmd "nginx -s reload"`
# (docs/nginx.md, deploy/nginx/).
#
# This is the widely copied "Nginx with Vault PKI templates" job, corrected:
#
#   - ssl_client_certificate is the portal's CA chain (pki/cert/ca_chain: the
#     issuing CA, then the root). The original wrote the *server certificate*
#     there: portal certificates then fail, and if that certificate is a CA,
#     whatever it signs is admitted.
#   - ssl_crl holds the CRL of every CA in that chain (pki and pki_root).
#     Nginx checks revocation for each CA and refuses every certificate when
#     one CRL is missing; the original had no CRL at all, so a revoked
#     certificate was admitted until it expired.
#   - The server certificate comes from its own role, nginx-server (server
#     authentication only), in its own mount pki_server (an intermediate under
#     the same root, out of reach of the portal's AppRole, which may revoke in
#     pki), not from the users' role, and the certificate and key come from
#     one issue call (identical arguments, see below).
#   - /secure answers 403 without a verified certificate (ssl_verify_client
#     optional alone lets everyone in), TLS session resumption is off, and the
#     upstream gets the verified identity in headers a client cannot set.
#
# Before running it:
#
#   certportal setup --server-names app.example.com   # role nginx-server, policy certportal-nginx
#   # Vault does not rebuild an unchanged CRL by itself, and these templates
#   # cannot ask it to: without this, the CRLs expire after 72h and Nginx
#   # refuses everyone. (nginx-certs rebuilds them itself.)
#   vault write pki/config/crl auto_rebuild=true
#   vault write pki_root/config/crl auto_rebuild=true
#
# and give the job a Vault role that grants the certportal-nginx policy (with
# Nomad's workload identities: a JWT auth role named certportal-nginx with
# token_policies=certportal-nginx; see `nomad setup vault`).

variable "server_name" {
  type        = string
  default     = "app.example.com"
  description = "host name of the site; the nginx-server role must allow it"
}

variable "upstream" {
  type        = string
  default     = "http://127.0.0.1:9000"
  description = "the application, reachable from the container and only through Nginx: scheme, host and port, no path or trailing slash"
}

job "certportal-nginx" {
  type = "service"

  group "nginx" {
    network {
      port "https" {
        static = 443
      }
    }

    service {
      name     = "certportal-nginx"
      port     = "https"
      provider = "nomad"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "nginx" {
      driver = "docker"

      config {
        image = "nginx:1.27"
        ports = ["https"]
        # Replaces the image's default server (plain HTTP on port 80), so this
        # block is the only one on the address: no other server block's TLS
        # sessions can be resumed here.
        volumes = ["local/certportal.conf:/etc/nginx/conf.d/default.conf"]
      }

      vault {
        # Nomad 1.7 and later (workload identity). Older clusters with the
        # token-based integration: policies = ["certportal-nginx"].
        role = "certportal-nginx"
      }

      # Server certificate followed by the issuing CA, and its key. The two
      # templates call pki/issue with identical arguments, so consul-template
      # issues once and both files come from the same response; change one and
      # change the other, or the key will not match the certificate. The
      # certificate is issued again before it expires, and Nginx re-reads it on
      # SIGHUP, a graceful reload.
      template {
        destination   = "secrets/server.pem"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{- with secret "pki_server/issue/nginx-server" "common_name=${var.server_name}" "ttl=720h" }}
          {{ .Data.certificate }}
          {{ .Data.issuing_ca }}
          {{- end }}
        EOT
      }

      template {
        destination   = "secrets/server-key.pem"
        perms         = "0600"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{- with secret "pki_server/issue/nginx-server" "common_name=${var.server_name}" "ttl=720h" }}
          {{ .Data.private_key }}
          {{- end }}
        EOT
      }

      # The client CA: the portal's issuing CA chain, exactly. Never the server
      # certificate, never a general CA bundle.
      template {
        destination   = "secrets/client-ca.pem"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{- with secret "pki/cert/ca_chain" }}
          {{ .Data.certificate }}
          {{- end }}
        EOT
      }

      # The CRLs of both CAs in the chain, in one file. pki/cert/crl is the
      # JSON form of pki/crl/pem that templates can read; having no lease, it
      # is read again every few minutes (consul-template's default lease
      # duration), and a revocation reaches Nginx with the next read.
      template {
        destination   = "secrets/crl.pem"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{- with secret "pki/cert/crl" }}
          {{ .Data.certificate }}
          {{- end }}
          {{- with secret "pki_root/cert/crl" }}
          {{ .Data.certificate }}
          {{- end }}
        EOT
      }

      # The server block `certportal nginx-config` renders (deploy/nginx/certportal.conf),
      # with the paths above: the docker driver mounts secrets/ at /secrets.
      template {
        destination   = "local/certportal.conf"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          server {
              listen 443 ssl;
              server_name ${var.server_name};

              ssl_certificate     /secrets/server.pem;
              ssl_certificate_key /secrets/server-key.pem;
              ssl_protocols TLSv1.2 TLSv1.3;

              # Security-relevant: exactly the portal's issuing chain.
              ssl_client_certificate /secrets/client-ca.pem;
              ssl_verify_client optional;
              ssl_verify_depth 2;
              # Read at start and on every SIGHUP; the CRL template above refreshes it.
              ssl_crl /secrets/crl.pem;

              # A resumed session skips client certificate verification.
              ssl_session_tickets off;
              ssl_session_cache off;

              location / {
                  # Security-relevant (docs/nginx.md): any other spelling of the protected
                  # prefix is 404 here, and the URI part ("/") sends the upstream the path
                  # nginx judged, not the raw one (/secure/%2e%2e/x is judged /x).
                  if ($uri ~* "^/(?:s|\xC5\xBF)ecure") {
                      return 404;
                  }
                  proxy_pass ${var.upstream}/;
                  proxy_set_header X-SSL-Client-Verify      $ssl_client_verify;
                  proxy_set_header X-SSL-Client-S-DN        $ssl_client_s_dn;
                  proxy_set_header X-SSL-Client-Serial      $ssl_client_serial;
                  proxy_set_header X-SSL-Client-Fingerprint $ssl_client_fingerprint;
                  proxy_set_header Host              $host;
                  proxy_set_header X-Forwarded-For   $remote_addr;
                  proxy_set_header X-Forwarded-Proto $scheme;
              }

              location /secure {
                  # Security-relevant: with "optional" verification this check is
                  # what protects the location.
                  if ($ssl_client_verify != SUCCESS) {
                      return 403;
                  }
                  proxy_pass ${var.upstream}/secure;
                  proxy_set_header X-SSL-Client-Verify      $ssl_client_verify;
                  proxy_set_header X-SSL-Client-S-DN        $ssl_client_s_dn;
                  proxy_set_header X-SSL-Client-Serial      $ssl_client_serial;
                  proxy_set_header X-SSL-Client-Fingerprint $ssl_client_fingerprint;
                  proxy_set_header Host              $host;
                  proxy_set_header X-Forwarded-For   $remote_addr;
                  proxy_set_header X-Forwarded-Proto $scheme;
              }

              location = /secure/whoami {
                  if ($ssl_client_verify != SUCCESS) {
                      return 403;
                  }
                  default_type "text/plain; charset=utf-8";
                  add_header Cache-Control "no-store" always;
                  return 200 "subject: $ssl_client_s_dn\nserial: $ssl_client_serial\nnot after: $ssl_client_v_end\nverify: $ssl_client_verify\nfingerprint (SHA-1): $ssl_client_fingerprint\n";
              }
          }
        EOT
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
