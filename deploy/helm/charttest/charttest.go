// Package charttest renders deploy/helm/certportal with Helm's own library
// and checks the objects; it is its own module so Helm and the Kubernetes
// API types stay out of the portal's dependency graph.
package charttest
