/* tract's C interface (sonos/tract's FFI crate): the tract wheel's shared library is that
 * interface, shipped without its header, so the few functions used here are declared below
 * from their documented shapes. Every call returns 0 on success; tract_get_last_error()
 * says why not. The model keeps its symbolic dimensions (batch, seq) and runs at each call's
 * shapes, as the Python adapter does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

typedef struct TractOnnx TractOnnx;
typedef struct TractInferenceModel TractInferenceModel;
typedef struct TractModel TractModel;
typedef struct TractRunnable TractRunnable;
typedef struct TractState TractState;
typedef struct TractTensor TractTensor;

const char *tract_version(void);
const char *tract_get_last_error(void);
void tract_free_cstring(char *s);
int tract_onnx_create(TractOnnx **onnx);
int tract_onnx_destroy(TractOnnx **onnx);
int tract_onnx_load(const TractOnnx *onnx, const char *path, TractInferenceModel **model);
int tract_inference_model_input_count(const TractInferenceModel *model, size_t *count);
int tract_inference_model_input_name(const TractInferenceModel *model, size_t input, char **name);
int tract_inference_model_destroy(TractInferenceModel **model);
int tract_inference_model_into_model(TractInferenceModel **model, TractModel **typed);
int tract_model_into_runnable(TractModel **model, TractRunnable **runnable);
int tract_runnable_output_count(const TractRunnable *runnable, size_t *count);
int tract_runnable_spawn_state(const TractRunnable *runnable, TractState **state);
int tract_runnable_release(TractRunnable **runnable);
int tract_state_run(TractState *state, TractTensor **inputs, TractTensor **outputs);
int tract_state_destroy(TractState **state);
int tract_tensor_from_bytes(uint32_t datum_type, size_t rank, const size_t *shape, void *data,
                            TractTensor **tensor);
int tract_tensor_as_bytes(TractTensor *tensor, uint32_t *datum_type, size_t *rank,
                          const size_t **shape, const void **data);
int tract_tensor_destroy(TractTensor **tensor);

/* tract's DatumType codes for float32, float64, int32, int64 */
static const long long TRACT_TYPES[DT_COUNT] = {0x34, 0x38, 0x24, 0x28};

static TractOnnx *onnx;
static TractRunnable *runnable;
static char **input_names;     /* the model's inputs, in the order tract runs them */
static size_t n_inputs_model;

static int failed(const char *what) {
    const char *why = tract_get_last_error();
    return host_fail("TractError: %s: %s", what, why ? why : "no detail");
}

#define TRACT_CHECK(call, what) do { if ((call) != 0) return failed(what); } while (0)

const char *backend_name(void) { return "tract"; }
const char *backend_version(void) { return tract_version(); }

int backend_load(const char *model_path) {
    TractInferenceModel *model = NULL;
    TractModel *typed = NULL;
    if (!onnx) TRACT_CHECK(tract_onnx_create(&onnx), "onnx");
    TRACT_CHECK(tract_onnx_load(onnx, model_path, &model), "load");
    if (tract_inference_model_input_count(model, &n_inputs_model) != 0) {
        int rc = failed("input_count");
        tract_inference_model_destroy(&model);
        return rc;
    }
    input_names = calloc(n_inputs_model ? n_inputs_model : 1, sizeof *input_names);
    for (size_t i = 0; i < n_inputs_model; i++) {
        char *name = NULL;
        if (tract_inference_model_input_name(model, i, &name) != 0) {
            int rc = failed("input_name");
            tract_inference_model_destroy(&model);
            return rc;
        }
        input_names[i] = strdup(name);
        tract_free_cstring(name);
    }
    TRACT_CHECK(tract_inference_model_into_model(&model, &typed), "into_model");
    TRACT_CHECK(tract_model_into_runnable(&typed, &runnable), "into_runnable");
    return 0;
}

static const host_tensor *find_input(const host_tensor *inputs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(inputs[i].name, name) == 0) return &inputs[i];
    return NULL;
}

static int to_host(TractTensor *t, const char *name, host_tensor *out) {
    uint32_t type;
    size_t rank;
    const size_t *shape;
    const void *data;
    TRACT_CHECK(tract_tensor_as_bytes(t, &type, &rank, &shape, &data), "as_bytes");
    if (rank > HOST_MAX_RANK) return host_fail("output %s: rank %zu", name, rank);
    out->rank = (int)rank;
    for (size_t i = 0; i < rank; i++) out->dims[i] = (int64_t)shape[i];
    return host_output(out, name, TRACT_TYPES, type, data);
}

int backend_run(const host_tensor *inputs, int n_inputs, char *const *names, int n_outputs,
                host_tensor *outputs) {
    size_t count = 0;
    TRACT_CHECK(tract_runnable_output_count(runnable, &count), "output_count");
    if ((int)count != n_outputs)
        return host_fail("tract sees %zu outputs, the graph has %d", count, n_outputs);
    TractTensor **in = calloc(n_inputs_model ? n_inputs_model : 1, sizeof *in);
    TractTensor **out = calloc(count ? count : 1, sizeof *out);
    TractState *state = NULL;
    int rc = 0;
    for (size_t i = 0; i < n_inputs_model && rc == 0; i++) {
        const host_tensor *t = find_input(inputs, n_inputs, input_names[i]);
        size_t shape[HOST_MAX_RANK];
        if (!t) { rc = host_fail("no value for input %s", input_names[i]); break; }
        for (int d = 0; d < t->rank; d++) shape[d] = (size_t)t->dims[d];
        if (tract_tensor_from_bytes((uint32_t)TRACT_TYPES[t->dtype], (size_t)t->rank, shape, t->data, &in[i]))
            rc = failed(t->name);
    }
    if (rc == 0 && tract_runnable_spawn_state(runnable, &state) != 0) rc = failed("spawn_state");
    if (rc == 0 && tract_state_run(state, in, out) != 0) rc = failed("run");
    /* outputs come by position: tract names them after their producing nodes */
    for (size_t i = 0; i < count && rc == 0; i++) rc = to_host(out[i], names[i], &outputs[i]);
    for (size_t i = 0; i < count; i++) if (out[i]) tract_tensor_destroy(&out[i]);
    for (size_t i = 0; i < n_inputs_model; i++) if (in[i]) tract_tensor_destroy(&in[i]);
    if (state) tract_state_destroy(&state);
    free(in);
    free(out);
    return rc;
}

void backend_unload(void) {
    if (runnable) tract_runnable_release(&runnable);
    runnable = NULL;
    for (size_t i = 0; i < n_inputs_model; i++) free(input_names[i]);
    free(input_names);
    input_names = NULL;
    n_inputs_model = 0;
}
