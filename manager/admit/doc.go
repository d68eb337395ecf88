// Package admit decides whether a verified certificate still speaks for a
// member of the cluster. A certificate outlives what it names: a removed
// node keeps a valid certificate until it expires, and a demoted manager
// keeps its manager certificate (and the client bundle it wrote). Every
// manager asks here, on every call and every Raft connection, against its
// replicated store, so all of them refuse at once what one removed or
// demoted.
//
// It knows nothing of gRPC servers or TLS: callers pass the identity they
// verified and get a status error (PermissionDenied) to return.
package admit
