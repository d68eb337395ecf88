package validate

import "fmt"

// FieldError is a spec problem: which field, what is wrong, how to fix it.
type FieldError struct {
	// Field is the spec path, e.g. "task.container.image".
	Field   string
	Problem string
	Fix     string
}

func (e *FieldError) Error() string {
	if e.Fix == "" {
		return fmt.Sprintf("invalid %s: %s", e.Field, e.Problem)
	}
	return fmt.Sprintf("invalid %s: %s; %s", e.Field, e.Problem, e.Fix)
}

func fieldErr(field, problem, fix string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: problem, Fix: fmt.Sprintf(fix, args...)}
}
