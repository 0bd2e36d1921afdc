module github.com/moe-trtllm/moe-trtllm/bindings/go

go 1.19
