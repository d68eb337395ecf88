// Package leadership runs leader-only work for exactly as long as this
// manager leads: it starts a function with a context when leadership is
// gained, cancels that context and waits for the function to return when
// leadership is lost, and starts it again on the next term. A function that
// fails ends its term's work (logged) and starts again after a backoff while
// leadership lasts. Callers need no Stop or done-channel choreography: the
// context is the whole protocol.
//
// It knows nothing of Raft or the store; it must not import them.
package leadership
