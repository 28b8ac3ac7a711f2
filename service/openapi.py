"""The OpenAPI 3.1 description of the service (tests check responses against it)."""
from fastner.tokenize import TOKEN_PATTERN

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_responses(*statuses):
    text = {400: "Malformed JSON, invalid UTF-8 or an unreadable body", 413: "Body, characters, "
            "item count or token count over the limit", 415: "Content-Type is not application/json", 422: "Well-formed JSON of "
            "the wrong shape or types", 503: "The model cannot answer", 408: "The body stopped "
            "arriving for FASTNER_CLIENT_TIMEOUT seconds"}
    return {str(s): {"description": text[s], "content": {"application/json": {"schema": _ERROR}}}
            for s in statuses}


def spec(config):
    limits = (f"Limits: body {config['FASTNER_MAX_BODY_BYTES']} bytes, "
              f"{config['FASTNER_MAX_CHARS']} characters of text, "
              f"{config['FASTNER_MAX_TEXTS']} items in `texts`/`tokens`, "
              f"{config['FASTNER_MAX_TOKENS']} tokens per request (413 beyond). Strings must "
              f"hold whole characters: a lone surrogate escape gets 422.")
    entity = {
        "type": "object",
        "required": ["text", "label", "start", "end", "token_start", "token_end", "score"],
        "additionalProperties": False,
        "properties": {
            "text": {"type": "string", "description": "input[start:end]"},
            "label": {"type": "string", "description": "entity type, e.g. PER, LOC, ORG, MISC"},
            "start": {"type": "integer", "minimum": 0,
                      "description": "character offset (Python code points) of the first "
                                     "character"},
            "end": {"type": "integer", "minimum": 0, "description": "offset after the last "
                                                                   "character (exclusive)"},
            "token_start": {"type": "integer", "minimum": 0},
            "token_end": {"type": "integer", "minimum": 1, "description": "exclusive"},
            "score": {"type": "number", "minimum": 0, "maximum": 1,
                      "description": "lowest probability, over the entity's tokens, of the tag "
                                     "the model gave that token"},
        },
    }
    token = {"type": "object", "required": ["text", "start", "end", "tag"],
             "additionalProperties": False,
             "properties": {"text": {"type": "string"}, "start": {"type": "integer"},
                            "end": {"type": "integer"}, "tag": {"type": "string"}}}
    result = {"type": "object", "required": ["entities"], "additionalProperties": False,
              "properties": {"entities": {"type": "array", "items": {"$ref": "#/components/schemas/Entity"}},
                             "tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "fastner tagging service", "version": "1",
                 "description": "Named-entity tagging with a Cython window classifier. Offsets "
                                "are Python code-point indices into each input, end exclusive "
                                "(in JavaScript, index Array.from(text), not the string). "
                                + limits},
        "paths": {
            "/v1/tag": {"post": {
                "summary": "Tag text",
                "description": "Send exactly one of `text`, `texts` or `tokens`. For `tokens` "
                               "(pre-tokenised sentences), offsets index the sentence's tokens "
                               "joined by single spaces. " + limits,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TagRequest"}}}},
                "responses": {
                    "200": {"description": "Entities per input: a single result for `text`, "
                                           "`results` for `texts`/`tokens`",
                            "content": {"application/json": {"schema": {"oneOf": [
                                {"$ref": "#/components/schemas/SingleResult"},
                                {"$ref": "#/components/schemas/BatchResult"}]}}}},
                    **_error_responses(400, 408, 413, 415, 422)}}},
            "/v1/model": {"get": {"summary": "The served model: tags, configuration, scores",
                                  "responses": {"200": {"description": "Model information",
                                                        "content": {"application/json": {"schema": {
                                                            "$ref": "#/components/schemas/ModelInfo"}}}}}}},
            "/healthz": {"get": {"summary": "The process is alive",
                                 "responses": {"200": {"description": "Alive", "content": {
                                     "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}}}},
            "/readyz": {"get": {"summary": "The model is loaded and answering",
                                "responses": {"200": {"description": "Ready", "content": {
                                    "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
                                              **_error_responses(503)}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format)",
                                 "responses": {"200": {"description": "Metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {
            "TagRequest": {
                "type": "object", "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "text": {"type": "string"},
                    "texts": {"type": "array", "items": {"type": "string"},
                              "maxItems": config["FASTNER_MAX_TEXTS"]},
                    "tokens": {"type": "array", "maxItems": config["FASTNER_MAX_TEXTS"],
                               "items": {"type": "array",
                                         "items": {"type": "string", "minLength": 1,
                                                   "pattern": TOKEN_PATTERN,
                                                   "description": "no white space (the "
                                                                  "characters Python's "
                                                                  "str.isspace accepts)"}}},
                    "include_tokens": {"type": "boolean", "default": False}},
                "oneOf": [{"required": ["text"]}, {"required": ["texts"]},
                          {"required": ["tokens"]}]},
            "Entity": entity,
            "Token": token,
            "Result": result,
            "SingleResult": {"type": "object", "required": ["entities", "model"],
                             "additionalProperties": False,
                             "properties": {"entities": result["properties"]["entities"],
                                            "tokens": result["properties"]["tokens"],
                                            "model": {"type": "string"}}},
            "BatchResult": {"type": "object", "required": ["results", "model"],
                            "additionalProperties": False,
                            "properties": {"results": {"type": "array",
                                                       "items": {"$ref": "#/components/schemas/Result"}},
                                           "model": {"type": "string"}}},
            "ModelInfo": {"type": "object",
                          "required": ["name", "tags", "entity_types", "config", "scores"],
                          "properties": {"name": {"type": "string"},
                                         "tags": {"type": "array", "items": {"type": "string"}},
                                         "entity_types": {"type": "array",
                                                          "items": {"type": "string"}},
                                         "config": {"type": "object"},
                                         "scores": {"type": "object"},
                                         "training_command": {"type": ["string", "null"]},
                                         "load_seconds": {
                                             "type": "object",
                                             "description": "time to read the model file and "
                                                            "to build its inference cache",
                                             "properties": {
                                                 "read": {"type": ["number", "null"]},
                                                 "cache": {"type": ["number", "null"]}}},
                                         "inference_cache_mb": {"type": "number"}}},
            "Status": {"type": "object", "required": ["status"],
                       "properties": {"status": {"type": "string"}}},
            "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                      "properties": {"error": {"type": "object", "required": ["code", "message"],
                                               "additionalProperties": False,
                                               "properties": {"code": {"type": "string"},
                                                              "message": {"type": "string"}}}}},
        }},
    }
