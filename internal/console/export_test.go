package console

import "strings"

// PostPatterns lists the patterns of the routes that take a POST (the
// state-changing ones, and the catch-all), for tests in console_test.
func (c *Console) PostPatterns() []string {
	var out []string
	for _, rt := range c.routeTable() {
		if strings.HasPrefix(rt.pattern, "POST ") || !strings.Contains(rt.pattern, " ") {
			out = append(out, rt.pattern)
		}
	}
	return out
}

// TaskActions names the task buttons of POST /tasks/{id}/{action}.
func TaskActions() []string {
	var out []string
	for name := range taskActions {
		out = append(out, name)
	}
	return out
}
