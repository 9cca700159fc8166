// Package deploytest holds the tests of certportal's deployment artifacts:
// the OCI image `make image` builds, the systemd units, the Helm chart, and
// several portal replicas behind a load balancer. It has no non-test code.
package deploytest
