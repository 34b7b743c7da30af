package template

// Limits on what one template may hold. Each is checked before the work it
// bounds is done, so an oversized or hostile template is refused in time and
// memory proportional to the limit, not to the input, with a
// *taskertype.TemplateError naming the file, line, field and step. They are
// documented in docs/guarantees.md ("Limits").
const (
	// MaxFileBytes is the largest template file Parse and LoadDir accept
	// (1 MiB). A bigger file is refused before it is parsed; LoadDir reads no
	// more than this much of any file.
	MaxFileBytes = 1 << 20

	// MaxSteps is the most steps a template file may list in step_templates,
	// and the most step overrides its environments may list in all. A list
	// is counted before any of its entries is read.
	MaxSteps = 10000

	// MaxNestingDepth is the deepest nesting of mappings and lists inside a
	// template's schema and inside each step's handler_config: the schema or
	// handler_config mapping itself is level 1. A JSON Schema's cost to
	// compile grows faster than linearly with its depth.
	MaxNestingDepth = 64

	// MaxExpandedBytes bounds the text a template file expands to once YAML
	// aliases and merge keys are followed: the bytes of every string,
	// number and mapping key read into the template (names, descriptions,
	// handler classes, the schema, every handler_config), counting a value
	// reached through an alias at every use (4 MiB). It stops a small file
	// from expanding into a large one ("billion laughs").
	MaxExpandedBytes = 4 << 20

	// MaxNumberDigits is the most digits a number in a schema or a
	// handler_config may have (integer and fraction digits together).
	MaxNumberDigits = 1000

	// MaxNumberExponent bounds the decimal exponent of a number in a schema
	// or a handler_config: |exponent| <= MaxNumberExponent, so every number
	// a template holds is stored exactly by both databases.
	MaxNumberExponent = 10000

	// MaxSchemaApplications bounds how many subschemas the context schema
	// may apply to one value of the context: every path through $ref,
	// $dynamicRef, allOf, anyOf, oneOf, not, if/then/else and
	// dependentSchemas that stays on the same value counts once. A $ref
	// cycle that stays on the same value (a schema that would apply itself
	// forever) is refused whatever this limit.
	MaxSchemaApplications = 10000

	// maxErrorsPerFile bounds the problems reported for one file; the rest
	// are counted in a last message (and past ten times as many, no longer
	// kept in memory while the file is read).
	maxErrorsPerFile = 100
)
