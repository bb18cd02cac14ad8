/*
 * tboard.h — TensorBoard event files, as the Hugging Face Trainer's
 * `report_to: tensorboard` (TensorBoardCallback with torch's SummaryWriter)
 * writes them, so `tensorboard --logdir` shows an lf run like a
 * LLaMA-Factory one.
 *
 * A file events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>.<n>
 * in the log folder holds TFRecord-framed `Event` protobufs: first the
 * version event (file_version "brain.Event:2", source_metadata.writer
 * "lf"), then one event per scalar
 * (wall_time, step, summary { value { tag, simple_value } }).  Every record
 * is flushed to the file as it is written, so a killed run leaves a file
 * TensorBoard reads up to its last whole record.
 *
 * Where it goes (transformers 5.5.4): $TENSORBOARD_LOGGING_DIR (a leading ~
 * expanded) or else OUTPUT_DIR/runs/<Mon><DD>_<HH>-<MM>-<SS>_<hostname>
 * (local time, English month abbreviation): lf_tboard_default_logdir.
 *
 * What the Trainer logs, and under which tags.  Trainer.log passes a dict
 * to TensorBoardCallback.on_log, which renames every key (rewrite_logs:
 * "eval_X" -> "eval/X", "test_X" -> "test/X", any other "X" -> "train/X";
 * lf_tboard_hf_tag does this) and writes each int or float value as a
 * scalar at step state.global_step, one event per value, in dict order, then
 * flushes:
 *   - every logging_steps optimizer steps:
 *       train/loss           mean training loss since the last log
 *       train/grad_norm      gradient norm before clipping (when computed)
 *       train/learning_rate  the scheduler's current learning rate
 *       train/epoch          fractional epoch (state.epoch)
 *     and with include_num_input_tokens_seen also
 *       train/num_input_tokens_seen, train/train_runtime,
 *       train/train_tokens_per_second
 *     (LLaMA-Factory's DPO/KTO trainers add train/rewards/chosen,
 *     train/rewards/rejected, train/rewards/accuracies,
 *     train/rewards/margins, train/logps/chosen, train/logps/rejected,
 *     train/logits/chosen, train/logits/rejected [, train/sft_loss,
 *     train/odds_ratio_loss; KTO: train/kl])
 *   - after each evaluation:
 *       eval/loss, eval/runtime, eval/samples_per_second,
 *       eval/steps_per_second (eval/model_preparation_time when measured),
 *       and train/epoch again; per-dataset evaluation gives eval/<name>_loss,
 *       DPO/KTO evaluation eval/rewards/chosen and the like
 *   - once at the end of training:
 *       train/train_runtime, train/train_samples_per_second,
 *       train/train_steps_per_second, train/total_flos, train/train_loss,
 *       train/epoch
 * At train begin the callback also writes two text summaries: "args" (the
 * TrainingArguments as JSON) and "model_config" (the model's config.json
 * text), at step 0; lf_tboard_text writes those (tag "<name>/text_summary",
 * plugin "text", a one-element DT_STRING tensor).
 */
#ifndef LF_TBOARD_H
#define LF_TBOARD_H

#include <stddef.h>
#include <stdint.h>

struct lf_tboard;

/* Create LOGDIR (and its parents) if missing and start a new event file in
 * it, written with the version event.  Returns NULL with lf_fail. */
struct lf_tboard *lf_tboard_open(const char *logdir);
/* The event file's path. */
const char *lf_tboard_path(const struct lf_tboard *tb);

/* One scalar event: TAG at STEP with VALUE (stored as a float, like
 * SummaryWriter.add_scalar), WALL_TIME seconds since the epoch (<= 0: now).
 * The record is flushed to the file.  Returns -1 with lf_fail. */
int lf_tboard_scalar(struct lf_tboard *tb, const char *tag, int64_t step, float value, double wall_time);
/* One text event as SummaryWriter.add_text(NAME, TEXT, STEP) writes it
 * (tag "NAME/text_summary").  Returns -1 with lf_fail. */
int lf_tboard_text(struct lf_tboard *tb, const char *name, const char *text, int64_t step, double wall_time);
/* Flush and fsync the file.  Returns -1 with lf_fail. */
int lf_tboard_flush(struct lf_tboard *tb);
/* Flush, close and free (NULL is fine).  Returns -1 with lf_fail when a
 * write failed. */
int lf_tboard_close(struct lf_tboard *tb);

/* The tag TensorBoardCallback gives a Trainer log key ("loss" ->
 * "train/loss", "eval_loss" -> "eval/loss", "test_x" -> "test/x"); the
 * caller frees it. */
char *lf_tboard_hf_tag(const char *key);
/* The Trainer's default log folder for OUTPUT_DIR at time NOW (see above);
 * the caller frees it. */
char *lf_tboard_default_logdir(const char *output_dir, int64_t now);

/* CRC-32C (Castagnoli) of N bytes, continuing from CRC (0 to start):
 * lf_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t lf_crc32c(uint32_t crc, const void *data, size_t n);
/* The TFRecord mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t lf_tboard_mask_crc(uint32_t crc);
/* Frame PAYLOAD as one TFRecord into OUT (N + 16 bytes). */
void lf_tboard_frame(unsigned char *out, const void *payload, size_t n);

#endif
