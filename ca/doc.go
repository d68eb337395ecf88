// Package ca is the cluster's certificate authority and the identities it
// hands out: the root CA, join tokens that pin it, node certificates whose
// subject carries the node ID and role, the TLS configurations every gRPC
// connection uses, and sealing of secrets (the CA key) with the cluster key.
//
// It is pure crypto over x509 and crypto/tls: no gRPC, no store. Managers
// and agents both use it; it imports nothing of berth's.
package ca
