"""Protobuf and gRPC C++ code generation with Debian's protoc, offline.

cairn_proto_library(name, src, grpc) runs the system `protoc` (and, with
grpc = True, the system `grpc_cpp_plugin`) over one .proto file and wraps
the generated sources in a cc_library called `name`.
"""

def cairn_proto_library(name, src, grpc = False, deps = [], visibility = None):
    base = src[:-len(".proto")]
    outs = [base + ".pb.h", base + ".pb.cc"]
    if grpc:
        outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    cmd = "protoc -I. --cpp_out=$(GENDIR) "
    if grpc:
        cmd += "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=$$(which grpc_cpp_plugin) "
    cmd += "$(location " + src + ")"
    native.genrule(
        name = name + "_gen",
        srcs = [src] + [d + "_srcs" for d in deps],
        outs = outs,
        cmd = cmd,
    )
    native.filegroup(
        name = name + "_srcs",
        srcs = [src],
        visibility = visibility,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["//third_party/sys:protobuf"] + (["//third_party/sys:grpc"] if grpc else []),
        visibility = visibility,
    )
