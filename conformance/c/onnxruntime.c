/* onnxruntime's C API, CPU execution provider. The onnxruntime wheel ships the library
 * (capi/libonnxruntime.so.*) but not onnxruntime_c_api.h: the runner compiles this backend
 * only where $ORT_C_INCLUDE names a folder holding that header (any release whose
 * ORT_API_VERSION the installed library serves: the C API only grows). */
#include <stdlib.h>
#include <string.h>

#include <onnxruntime_c_api.h>

#include "host.h"

static const OrtApi *api;
static OrtEnv *env;
static OrtSession *session;
static OrtMemoryInfo *cpu;

static const long long ORT_TYPES[DT_COUNT] = {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};

static int failed(OrtStatus *status, const char *what) {
    int rc = host_fail("%s: %s", what, api->GetErrorMessage(status));
    api->ReleaseStatus(status);
    return rc;
}

#define ORT_CHECK(call, what) do { OrtStatus *s_ = (call); if (s_) return failed(s_, what); } while (0)

const char *backend_name(void) { return "onnxruntime"; }
const char *backend_version(void) { return OrtGetApiBase()->GetVersionString(); }

int backend_load(const char *model_path) {
    if (!api) {
        api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
        if (!api) return host_fail("the library does not serve ORT_API_VERSION %d", ORT_API_VERSION);
        ORT_CHECK(api->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "conformance", &env), "CreateEnv");
        ORT_CHECK(api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &cpu), "CpuMemoryInfo");
    }
    OrtSessionOptions *options = NULL;
    ORT_CHECK(api->CreateSessionOptions(&options), "CreateSessionOptions");
    OrtStatus *s = api->CreateSession(env, model_path, options, &session);
    api->ReleaseSessionOptions(options);
    return s ? failed(s, "CreateSession") : 0;
}

static int to_host(OrtValue *value, const char *name, host_tensor *out) {
    OrtTensorTypeAndShapeInfo *info = NULL;
    ONNXTensorElementDataType type;
    size_t rank;
    void *data;
    ORT_CHECK(api->GetTensorTypeAndShape(value, &info), "GetTensorTypeAndShape");
    OrtStatus *s = api->GetTensorElementType(info, &type);
    if (!s) s = api->GetDimensionsCount(info, &rank);
    if (!s && rank <= HOST_MAX_RANK) s = api->GetDimensions(info, out->dims, rank);
    api->ReleaseTensorTypeAndShapeInfo(info);
    if (s) return failed(s, name);
    if (rank > HOST_MAX_RANK) return host_fail("output %s: rank %zu", name, rank);
    out->rank = (int)rank;
    ORT_CHECK(api->GetTensorMutableData(value, &data), "GetTensorMutableData");
    return host_output(out, name, ORT_TYPES, type, data);
}

int backend_run(const host_tensor *inputs, int n_inputs, char *const *names, int n_outputs,
                host_tensor *outputs) {
    OrtValue **in = calloc((size_t)(n_inputs > 0 ? n_inputs : 1), sizeof *in);
    OrtValue **out = calloc((size_t)(n_outputs > 0 ? n_outputs : 1), sizeof *out);
    const char **in_names = calloc((size_t)(n_inputs > 0 ? n_inputs : 1), sizeof *in_names);
    int rc = 0;
    for (int i = 0; i < n_inputs && rc == 0; i++) {
        const host_tensor *t = &inputs[i];
        in_names[i] = t->name;
        OrtStatus *s = api->CreateTensorWithDataAsOrtValue(
            cpu, t->data, host_elements(t) * host_dtype_size(t->dtype), t->dims, (size_t)t->rank,
            (ONNXTensorElementDataType)ORT_TYPES[t->dtype], &in[i]);
        if (s) rc = failed(s, t->name);
    }
    if (rc == 0) {
        OrtStatus *s = api->Run(session, NULL, in_names, (const OrtValue *const *)in,
                                (size_t)n_inputs, (const char *const *)names, (size_t)n_outputs, out);
        if (s) rc = failed(s, "Run");
    }
    for (int i = 0; i < n_outputs && rc == 0; i++) rc = to_host(out[i], names[i], &outputs[i]);
    for (int i = 0; i < n_outputs; i++) if (out[i]) api->ReleaseValue(out[i]);
    for (int i = 0; i < n_inputs; i++) if (in[i]) api->ReleaseValue(in[i]);
    free(in);
    free(out);
    free(in_names);
    return rc;
}

void backend_unload(void) {
    if (session) api->ReleaseSession(session);
    session = NULL;
}
