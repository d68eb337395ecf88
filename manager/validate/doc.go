// Package validate is the one place specs are checked before they are
// accepted. Every problem is a *FieldError naming the field and the fix, which
// the Control API returns as InvalidArgument. Checks that need cluster state
// (duplicate names, unknown networks or secrets, port clashes) take what they
// need as arguments; this package reads no store.
package validate
