// Package provider fetches metric values for analysis: a Prometheus server over its HTTP
// API (Remote), any Querier such as the embedded store, and JSON web endpoints (Web).
// It returns raw results in Argo's shapes (vector → []float64, scalar → float64); the
// analyzer applies the conditions. Credentials are read at query time and never logged
// or put into error messages.
package provider
