UPDATE batch_runs SET videos_embedded = %s WHERE id = %s;
