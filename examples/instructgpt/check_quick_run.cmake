# Runs `instructgpt --quick --out OUT` and checks what a CI run can check: it exits 0, writes the
# report, the figures, the checkpoints and every metrics log, and PPO and PPO-ptx raised the
# reward-model score of their rollouts (mean of the last quarter of the iterations above the mean
# of the first quarter, as the program records them in summary.json).
file(REMOVE_RECURSE ${OUT})
execute_process(COMMAND ${PROGRAM} --quick --out ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "instructgpt --quick exited with ${rc}")
endif()
foreach(f report.md summary.json reward.svg kl.svg beta.svg scores.svg tokenizer.tiktoken
          pretrain_small.jsonl pretrain_large.jsonl sft_small.jsonl sft_large.jsonl reward_model.jsonl
          ppo.jsonl ppo_ptx.jsonl checkpoints/sft_small.safetensors checkpoints/reward_model.safetensors
          checkpoints/ppo.safetensors checkpoints/ppo_ptx.safetensors)
  if(NOT EXISTS ${OUT}/${f})
    message(FATAL_ERROR "instructgpt --quick did not write ${f}")
  endif()
endforeach()
file(READ ${OUT}/summary.json summary)
foreach(run ppo ppo_ptx)
  string(JSON first GET "${summary}" ${run} reward_first_quarter)
  string(JSON last GET "${summary}" ${run} reward_last_quarter)
  if(NOT last GREATER first)
    message(FATAL_ERROR "${run}: the reward did not rise (first quarter ${first}, last quarter ${last})")
  endif()
  message(STATUS "${run}: reward ${first} -> ${last}")
endforeach()
