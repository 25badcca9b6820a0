"""Data: IAM on disk, synthetic IAM-format forms, George Washington pages, TFRecords, tf.data."""
