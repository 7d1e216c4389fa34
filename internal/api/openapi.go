package api

import (
	"net/http"
	"reflect"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
)

// The streamed routes are plain chi handlers, so huma cannot describe them
// from types; these functions add them to the document by hand.

func (a *API) documentUpload(path string) {
	str := &huma.Schema{Type: huma.TypeString}
	boolean := &huma.Schema{Type: huma.TypeBoolean}
	list := &huma.Schema{Type: huma.TypeArray, Items: str}
	a.document(&huma.Operation{
		OperationID: "upload-firmware", Method: http.MethodPost, Path: path, Tags: []string{"firmware"},
		Summary: "Upload a firmware",
		Description: "Streams the file in the body. Answers 409 when the version exists, 413 over the size limit, " +
			"422 when sha256 is given and differs (nothing is kept in either case), 400 for a bad version.",
		Parameters: []*huma.Param{
			query("product", "Product key.", str, true),
			query("version", "Firmware version (SemVer or dotted numeric; other versions need from).", str, true),
			query("module", "Module (default: default).", str, false),
			query("from", "Versions it may upgrade from; repeat or separate with commas. Empty: any lower version.", list, false),
			query("sha256", "The file's SHA-256 in hex; the upload is refused when it differs.", str, false),
			query("verify_required", "Batch tasks may use it only after a verification task succeeded.", boolean, false),
			query("allow_downgrade", "Allow from-versions above version.", boolean, false),
			query("param", "A name=value passed to devices; repeat for several.", list, false),
			query("description", "Free text.", str, false),
		},
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"application/octet-stream": {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}},
		}},
	}, ota.RoleOperator, http.StatusCreated, reflect.TypeFor[ota.Firmware]())
}

func (a *API) documentImport(path string) {
	a.document(&huma.Operation{
		OperationID: "import-devices", Method: http.MethodPost, Path: path, Tags: []string{"devices"},
		Summary: "Import devices from CSV",
		Description: "One device per line as key[,tag=value...]; blank lines and # comments are ignored; " +
			"at most 100,000 devices. All lines are checked first: any bad line answers 400 naming it and nothing is created. " +
			"Running dynamic tasks take the imported devices they match (their jobs await their first version report).",
		Parameters: []*huma.Param{{Name: "product", In: "path", Required: true, Schema: &huma.Schema{Type: huma.TypeString}}},
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"text/csv": {Schema: &huma.Schema{Type: huma.TypeString}},
		}},
	}, ota.RoleOperator, http.StatusCreated, reflect.TypeFor[ImportResult]())
}

func (a *API) documentFile(path string) {
	op := &huma.Operation{
		OperationID: "download-firmware", Method: http.MethodGet, Path: path, Tags: []string{"firmware"},
		Summary:     "Download a firmware file",
		Description: "Supports Range and If-Range; the ETag is the file's SHA-256.",
		Parameters:  []*huma.Param{{Name: "id", In: "path", Required: true, Schema: &huma.Schema{Type: huma.TypeInteger, Format: "int64"}}},
	}
	a.document(op, ota.RoleViewer, http.StatusOK, nil)
	op.Responses["200"].Content = map[string]*huma.MediaType{
		"application/octet-stream": {Schema: &huma.Schema{Type: huma.TypeString, Format: "binary"}},
	}
}

// document adds op, answering status with a JSON body of type out (nil: no
// body) and problems otherwise.
func (a *API) document(op *huma.Operation, role ota.Role, status int, out reflect.Type) {
	reg := a.huma.OpenAPI().Components.Schemas
	ok := &huma.Response{Description: http.StatusText(status)}
	if out != nil {
		ok.Content = map[string]*huma.MediaType{"application/json": {Schema: reg.Schema(out, true, out.Name())}}
	}
	op.Description += "\n\nRequires the `" + string(role) + "` role."
	op.Security = []map[string][]string{{securityScheme: {}}}
	op.Responses = map[string]*huma.Response{
		strconv.Itoa(status): ok,
		"default": {Description: "Error", Content: map[string]*huma.MediaType{
			problemType: {Schema: reg.Schema(reflect.TypeFor[Problem](), true, "Problem")},
		}},
	}
	a.huma.OpenAPI().AddOperation(op)
}

func query(name, doc string, schema *huma.Schema, required bool) *huma.Param {
	return &huma.Param{Name: name, In: "query", Description: doc, Required: required, Schema: schema}
}
