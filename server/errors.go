package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// apiError is a refusal with its HTTP status and a stable code naming the
// problem ("too_many_steps", "queue_full", ...). Handlers return it; each
// API renders it in its own shape.
type apiError struct {
	Status  int
	Code    string
	Message string
	Param   string
	// RetryAfter, in seconds, is sent as Retry-After when positive.
	RetryAfter int
}

func (e *apiError) Error() string { return e.Message }

func badRequest(code, param, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Param: param, Message: msg}
}

// asAPIError turns any error into an apiError: a generation refused by the
// pipeline (bad parameters) is the client's fault, anything else a 500.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Message: "request body over " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: "internal_error", Message: err.Error()}
}

// style is how an API writes its errors.
type style int

const (
	styleNative style = iota
	styleA1111
	styleOpenAI
)

// writeError writes err in the API's shape: A1111's {error, detail,
// body, errors}, OpenAI's {"error":{message, type, param, code}}, or the
// native {"error":{code, message}}.
func writeError(w http.ResponseWriter, st style, err error) {
	ae := asAPIError(err)
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	var body any
	switch st {
	case styleA1111:
		body = map[string]any{"error": http.StatusText(ae.Status), "detail": ae.Message, "body": "", "errors": ae.Code}
	case styleOpenAI:
		typ := "invalid_request_error"
		switch {
		case ae.Status == http.StatusUnauthorized:
			typ = "authentication_error"
		case ae.Status == http.StatusTooManyRequests:
			typ = "rate_limit_error"
		case ae.Status >= 500:
			typ = "server_error"
		}
		var param any
		if ae.Param != "" {
			param = ae.Param
		}
		body = map[string]any{"error": map[string]any{"message": ae.Message, "type": typ, "param": param, "code": ae.Code}}
	default:
		body = map[string]any{"error": map[string]any{"code": ae.Code, "message": ae.Message}}
	}
	writeJSON(w, ae.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// styleOf picks the error shape by path.
func styleOf(path string) style {
	switch {
	case len(path) >= 7 && path[:7] == "/sdapi/", len(path) >= 12 && path[:12] == "/controlnet/":
		return styleA1111
	case len(path) >= 4 && path[:4] == "/v1/":
		return styleOpenAI
	}
	return styleNative
}
