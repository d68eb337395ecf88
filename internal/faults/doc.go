// Package faults is the checking half of the fault suite (e2e/faults): a
// recorder for the history of Control API operations a run makes, a
// porcupine model of the service registry those operations act on, and the
// report table the suite prints. It holds no I/O beyond printing and no
// cluster code; the suite drives real clusters and feeds it.
//
// It is test tooling: production code must not import it.
package faults
